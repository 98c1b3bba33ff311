# Shared end of the dump test firmware: the GDT (null, 32-bit code, data,
# 64-bit code) copied to 0x500 by pm-entry.S, and the reset vector jumping
# to `start`, in a 64 KiB image.
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
