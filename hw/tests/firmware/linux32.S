# 32-bit entry of a synthetic bzImage (at the load address): reports
# boot_params.type_of_loader (via ESI) on port 0x80, CS on port 0x81, then exits.
        .code32
        .text
        mov     0x210(%esi), %al
        out     %al, $0x80
        mov     %cs, %ax
        out     %al, $0x81
        mov     $0x501, %dx
        mov     $0x32, %al
        out     %al, %dx
1:      hlt
        jmp     1b
