# A PVH "kernel" for -kernel (an ELF with the XEN_ELFNOTE_PHYS32_ENTRY
# note): entered in 32-bit protected mode with EBX pointing at the
# hvm_start_info. It checks the magic, prints "pvh: " and the command line
# on COM1, then the first bytes of the first module (the -initrd) up to a
# newline, and exits through isa-debug-exit with 0x31 (0x13 on a bad magic).
        .section .note.Xen, "a", @note
        .balign 4
        .long   4               # name size ("Xen\0")
        .long   4               # descriptor size
        .long   18              # XEN_ELFNOTE_PHYS32_ENTRY
        .asciz  "Xen"
        .long   pvh_start

        .code32
        .text
        .globl  pvh_start
pvh_start:
        cld
        # PVH gives no stack; 0x90000 is free RAM below the EBDA.
        mov     $0x90000, %esp
        mov     $0x3f8, %dx
        cmpl    $0x336ec578, (%ebx)
        jne     bad
        mov     $prefix, %esi
        call    puts
        mov     24(%ebx), %esi          # cmdline_paddr
        call    puts
        mov     $'\n', %al
        out     %al, %dx
        cmpl    $0, 12(%ebx)            # nr_modules
        je      done
        mov     16(%ebx), %eax          # modlist_paddr
        mov     (%eax), %esi            # first module's paddr
1:      lodsb
        out     %al, %dx
        cmp     $'\n', %al
        jne     1b
done:
        mov     $0x31, %al
        jmp     exit
bad:
        mov     $0x13, %al
exit:
        mov     $0x501, %dx
        out     %al, %dx
2:      hlt
        jmp     2b

# Prints the NUL-terminated string at ESI on the port in DX.
puts:
        lodsb
        test    %al, %al
        jz      1f
        out     %al, %dx
        jmp     puts
1:      ret

prefix: .asciz  "pvh: "
