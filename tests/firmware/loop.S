# Speed probe firmware: runs the dword at physical 0x7000 iterations of a
# two-instruction loop (dec/jnz), then writes 0 to isa-debug-exit (0x501).
# The time from start to exit gives guest instructions per second.
        .code16
        .text
start:
        cli
        xor     %ax, %ax
        mov     %ax, %ds
        mov     0x7000, %ecx
1:      dec     %ecx
        jnz     1b
        mov     $0x501, %dx
        xor     %al, %al
        out     %al, %dx
2:      hlt
        jmp     2b

        .org    0xfff0
        ljmp    $0xf000, $start
        .org    0x10000
