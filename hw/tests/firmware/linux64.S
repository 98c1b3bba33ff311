# 64-bit entry of a synthetic bzImage (placed at load address + 0x200): reports
# boot_params.type_of_loader (via RSI) on port 0x80, CS on port 0x81, then exits.
        .code64
        .text
        mov     0x210(%rsi), %al
        out     %al, $0x80
        mov     %cs, %ax
        out     %al, $0x81
        mov     $0x501, %dx
        mov     $0x64, %al
        out     %al, %dx
1:      hlt
        jmp     1b
