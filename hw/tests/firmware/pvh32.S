# PVH entry: reports the low byte of hvm_start_info.magic (via EBX) on port 0x80 and
# CS on port 0x81, then exits.
        .code32
        .text
        mov     (%ebx), %eax
        out     %al, $0x80
        mov     %cs, %ax
        out     %al, $0x81
        mov     $0x501, %dx
        mov     $0x48, %al
        out     %al, %dx
1:      hlt
        jmp     1b
