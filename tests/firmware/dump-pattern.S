# Test firmware for the dump tests (tests/qemu-iotests 150-...). Assembled to a
# 64 KiB -bios image. For a 32 MiB guest it:
#  1. in protected mode, fills every 4 KiB page from 1 MiB to 32 MiB:
#       page number % 5 == 0  stays zero (one shared kdump descriptor),
#       page number % 5 == 1  gets pseudo-random dwords (do not compress),
#       otherwise             every dword holds the page number;
#  2. builds page tables at 0x10000 and enters long mode:
#       virt 0x0                  -> phys 0x0        2 MiB page
#       virt 0x200000 + i*4K      -> phys 0x1000000 + i*4K, 16 4 KiB pages
#       virt 0x400000             -> phys 0x800000   2 MiB page
#       virt 0xffff800000000000   -> phys 0x600000   2 MiB page
#       virt 0xffff800040000000   -> phys 0x0        1 GiB page (32 MiB of it RAM)
#  3. loads recognisable values into rbx/r12/r15, prints "D\n" on COM1, halts.
# Plain instructions only: under kvm_pvm much of this runs in KVM's emulator.
        .include "pm-entry.S"
        mov     $0x100, %ebx            # page number
        mov     $12345, %esi            # generator state
page:
        mov     %ebx, %edi
        shl     $12, %edi
        mov     %ebx, %eax
        xor     %edx, %edx
        mov     $5, %ecx
        div     %ecx
        cmp     $0, %edx
        je      next
        cmp     $1, %edx
        je      noise
        mov     %ebx, %eax
        mov     $1024, %ecx
        rep stosl
        jmp     next
noise:
        mov     $1024, %ecx
1:      imul    $1103515245, %esi, %esi
        add     $12345, %esi
        mov     %esi, %eax
        rol     $13, %eax
        stosl
        dec     %ecx
        jnz     1b
next:
        inc     %ebx
        cmp     $0x2000, %ebx
        jb      page

        # page tables, zeroed first
        mov     $0x10000, %edi
        xor     %eax, %eax
        mov     $(6 * 1024), %ecx
        rep stosl
        movl    $0x11003, 0x10000       # PML4[0]   -> PDPT0
        movl    $0x12003, 0x10800       # PML4[256] -> PDPT1
        movl    $0x13003, 0x11000       # PDPT0[0]  -> PD0
        movl    $0x15003, 0x12000       # PDPT1[0]  -> PD1
        movl    $0x00083, 0x13000       # PD0[0]: 2 MiB at 0
        movl    $0x14003, 0x13008       # PD0[1]  -> PT
        movl    $0x800083, 0x13010      # PD0[2]: 2 MiB at 8 MiB
        movl    $0x600083, 0x15000      # PD1[0]: 2 MiB at 6 MiB
        movl    $0x83, 0x12008          # PDPT1[1]: 1 GiB at 0
        mov     $0x14000, %edi          # PT[0..16]: 16 MiB + i * 4 KiB
        mov     $0x1000003, %eax
        mov     $16, %ecx
2:      mov     %eax, (%edi)
        add     $0x1000, %eax
        add     $8, %edi
        dec     %ecx
        jnz     2b

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
        movabs  $0x1122334455667788, %rbx
        movabs  $0x0123456789abcdef, %r12
        movabs  $0xfedcba9876543210, %r15
        mov     $0x3f8, %dx
        mov     $'D', %al
        out     %al, %dx
        mov     $'\n', %al
        out     %al, %dx
3:      hlt
        jmp     3b

        .include "gdt-tail.S"
