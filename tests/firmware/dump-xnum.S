# Test firmware for the dump test with more than 65535 PT_LOAD segments
# (PN_XNUM). Assembled to a 64 KiB -bios image for a 32 MiB guest. In
# protected mode it builds long-mode page tables at 0x10000 (PML4, PDPT,
# PD) where PD[0] identity-maps the first 2 MiB (this code) and PD[1..137]
# point to 137 page tables at 0x200000. Their 70144 entries map virtual page
# 0x200 + i to physical page 0x300 + (i * 2039) % 4096: no two neighbours
# are contiguous, so a paging dump needs one PT_LOAD for each. Then it enters
# long mode, prints "D\n" on COM1 and halts.
        .include "pm-entry.S"
        mov     $0x10000, %edi
        xor     %eax, %eax
        mov     $(3 * 1024), %ecx
        rep stosl
        movl    $0x11003, 0x10000       # PML4[0] -> PDPT
        movl    $0x12003, 0x11000       # PDPT[0] -> PD
        movl    $0x00083, 0x12000       # PD[0]: 2 MiB at 0
        mov     $0x12008, %edi          # PD[1..137] -> the page tables
        mov     $0x200003, %eax
        mov     $137, %ecx
2:      mov     %eax, (%edi)
        add     $0x1000, %eax
        add     $8, %edi
        dec     %ecx
        jnz     2b
        mov     $0x200000, %edi         # the 70144 scattered 4 KiB pages
        xor     %ebx, %ebx
1:      mov     %ebx, %eax
        imul    $2039, %eax, %eax
        and     $0xfff, %eax
        add     $0x300, %eax
        shl     $12, %eax
        or      $3, %eax
        mov     %eax, (%edi)
        movl    $0, 4(%edi)
        add     $8, %edi
        inc     %ebx
        cmp     $(137 * 512), %ebx
        jb      1b

        mov     $0x10000, %eax
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
        mov     $'D', %al
        out     %al, %dx
        mov     $'\n', %al
        out     %al, %dx
3:      hlt
        jmp     3b

        .include "gdt-tail.S"
