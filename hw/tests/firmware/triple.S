# Enters protected mode with an empty IDT (GDT copied to RAM), then loads a selector
# past the GDT limit: the #GP cannot be delivered, so the CPU double-faults and then
# shuts down (triple fault).
        .code16
        .text
start:
        cli
        cld
        mov     %cs, %ax
        mov     %ax, %ds
        xor     %ax, %ax
        mov     %ax, %es
        mov     $gdt, %si
        mov     $0x500, %di
        mov     $(gdt_end - gdt), %cx
        rep movsb
        lgdtl   gdtr
        lidtl   idtr
        mov     %cr0, %eax
        or      $1, %eax
        mov     %eax, %cr0
        ljmpl   $0x08, $(0xf0000 + pm)

        .code32
pm:
        mov     $0x58, %ax
        mov     %ax, %ds
        hlt

        .p2align 3
gdt:    .quad   0
        .quad   0x00cf9a000000ffff
        .quad   0x00cf92000000ffff
gdt_end:
gdtr:   .word   gdt_end - gdt - 1
        .long   0x500
idtr:   .word   0
        .long   0

        .code16
        .org    0xfff0
        ljmp    $0xf000, $start
        .org    0x10000
