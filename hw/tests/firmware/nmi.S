# Points the real-mode NMI vector (IVT entry 2) at a handler, writes 'R' to COM1 and
# halts. The handler writes 'N' to COM1 and halts for good (no IRET: kvm_pvm cannot
# emulate IRET right after an NMI).
        .code16
        .text
start:
        cli
        xor     %ax, %ax
        mov     %ax, %ds
        movw    $nmi, 0x8
        movw    $0xf000, 0xa
        mov     $0x3f8, %dx
        mov     $'R', %al
        out     %al, %dx
1:      hlt
        jmp     1b
nmi:
        mov     $0x3f8, %dx
        mov     $'N', %al
        out     %al, %dx
2:      hlt
        jmp     2b

        .org    0xfff0
        ljmp    $0xf000, $start
        .org    0x10000
