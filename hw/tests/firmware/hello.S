# Prints "hello\n" on the COM1 data port, then writes 0x21 to isa-debug-exit (0x501).
        .code16
        .text
start:
        mov     %cs, %ax
        mov     %ax, %ds
        mov     $0x3f8, %dx
        mov     $msg, %si
1:      lodsb
        test    %al, %al
        jz      2f
        out     %al, %dx
        jmp     1b
2:      mov     $0x501, %dx
        mov     $0x21, %al
        out     %al, %dx
        hlt
msg:    .asciz  "hello\n"

        .org    0xfff0
        ljmp    $0xf000, $start
        .org    0x10000
