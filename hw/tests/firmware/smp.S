# The BSP copies a GDT and an AP trampoline into RAM, enters protected mode, and sends
# INIT then SIPI (vector 0x08: the AP starts at 0x8000) to all other CPUs through the
# LAPIC ICR. The AP writes 'A' to COM1's data port, the BSP 'B'.
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
        mov     $ap, %si
        mov     $0x8000, %di
        mov     $(ap_end - ap), %cx
        rep movsb
        lgdtl   gdtr
        mov     %cr0, %eax
        or      $1, %eax
        mov     %eax, %cr0
        ljmpl   $0x08, $(0xf0000 + pm)

        .code32
pm:
        mov     $0x10, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        movl    $0x000c4500, 0xfee00300
        movl    $0x000c4608, 0xfee00300
        mov     $0x3f8, %dx
        mov     $'B', %al
        out     %al, %dx
1:      hlt
        jmp     1b

        .p2align 3
gdt:    .quad   0
        .quad   0x00cf9a000000ffff
        .quad   0x00cf92000000ffff
gdt_end:
gdtr:   .word   gdt_end - gdt - 1
        .long   0x500

        .code16
ap:
        mov     $0x3f8, %dx
        mov     $'A', %al
        out     %al, %dx
2:      hlt
        jmp     2b
ap_end:

        .org    0xfff0
        ljmp    $0xf000, $start
        .org    0x10000
