# Programs the 8259 PICs (master base 0x08, only IRQ 4 unmasked), points vector 0x0c at
# a handler, enables COM1's THR-empty interrupt and halts with interrupts on. The
# handler writes 'I' to COM1 and 0x7 to isa-debug-exit.
        .code16
        .text
start:
        cli
        xor     %ax, %ax
        mov     %ax, %ds
        movw    $isr, 0x30
        movw    $0xf000, 0x32
        mov     $0x11, %al
        out     %al, $0x20
        out     %al, $0xa0
        mov     $0x08, %al
        out     %al, $0x21
        mov     $0x70, %al
        out     %al, $0xa1
        mov     $0x04, %al
        out     %al, $0x21
        mov     $0x02, %al
        out     %al, $0xa1
        mov     $0x01, %al
        out     %al, $0x21
        out     %al, $0xa1
        mov     $0xef, %al
        out     %al, $0x21
        mov     $0xff, %al
        out     %al, $0xa1
        mov     $0x3f9, %dx
        mov     $0x02, %al
        out     %al, %dx
        sti
1:      hlt
        jmp     1b
isr:
        mov     $0x3f8, %dx
        mov     $'I', %al
        out     %al, %dx
        mov     $0x501, %dx
        mov     $0x07, %al
        out     %al, %dx
2:      cli
        hlt
        jmp     2b

        .org    0xfff0
        ljmp    $0xf000, $start
        .org    0x10000
