# Points the real-mode #BP vector (IVT entry 3) at a handler that writes 'B' to COM1,
# then executes INT3. Under kvm_pvm INT3 is a KVM internal error instead.
        .code16
        .text
start:
        cli
        xor     %ax, %ax
        mov     %ax, %ds
        movw    $bp, 0xc
        movw    $0xf000, 0xe
        int3
1:      hlt
        jmp     1b
bp:
        mov     $0x3f8, %dx
        mov     $'B', %al
        out     %al, %dx
2:      hlt
        jmp     2b

        .org    0xfff0
        ljmp    $0xf000, $start
        .org    0x10000
