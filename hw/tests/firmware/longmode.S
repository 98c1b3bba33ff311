# Real mode -> protected mode -> long mode with identity-mapped page tables built in RAM
# (PML4 at 0x1000, PDPT at 0x2000, PD at 0x3000 with one 2 MiB page). In 64-bit mode
# it prints "64", stores a 64-bit pattern at 0x5000 and writes 0x42 to port 0x501.
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
        mov     $0x1000, %edi
        xor     %eax, %eax
        mov     $(3 * 1024), %ecx
        rep stosl
        movl    $0x2003, 0x1000
        movl    $0x3003, 0x2000
        movl    $0x83, 0x3000
        mov     $0x1000, %eax
        mov     %eax, %cr3
        mov     %cr4, %eax
        or      $0x20, %eax
        mov     %eax, %cr4
        mov     $0xc0000080, %ecx
        rdmsr
        or      $0x100, %eax
        wrmsr
        mov     %cr0, %eax
        or      $0x80000000, %eax
        mov     %eax, %cr0
        ljmp    $0x18, $(0xf0000 + lm)

        .code64
lm:
        mov     $0x3f8, %dx
        mov     $'6', %al
        out     %al, %dx
        mov     $'4', %al
        out     %al, %dx
        movabs  $0x1122334455667788, %rax
        mov     %rax, 0x5000
        mov     $0x501, %dx
        mov     $0x42, %al
        out     %al, %dx
3:      hlt
        jmp     3b

        .p2align 3
gdt:    .quad   0
        .quad   0x00cf9a000000ffff
        .quad   0x00cf92000000ffff
        .quad   0x00af9a000000ffff
gdt_end:
gdtr:   .word   gdt_end - gdt - 1
        .long   0x500

        .org    0xfff0
        .code16
        ljmp    $0xf000, $start
        .org    0x10000
