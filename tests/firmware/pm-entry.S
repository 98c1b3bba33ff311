# Shared start of the dump test firmware: from the reset vector in real
# mode, copy the GDT (gdt-tail.S) to RAM at 0x500 (kvm_pvm needs descriptor
# tables in RAM), load it, enter 32-bit protected mode and set the data
# segments. The including file continues with 32-bit code.
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
