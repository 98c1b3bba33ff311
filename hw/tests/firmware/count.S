# Writes 'S' to COM1, then counts forever in the dword at 0x6000.
        .code16
        .text
start:
        xor     %ax, %ax
        mov     %ax, %ds
        mov     $0x3f8, %dx
        mov     $'S', %al
        out     %al, %dx
1:      incl    0x6000
        jmp     1b

        .org    0xfff0
        ljmp    $0xf000, $start
        .org    0x10000
