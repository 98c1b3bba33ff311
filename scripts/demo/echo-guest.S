# A tiny BIOS image for the README's demo: prints a banner on COM1, then
# echoes every byte typed on the serial line. 64 KiB, entered at the x86
# reset vector in real mode.
        .code16
        .text
start:
        mov     %cs, %ax
        mov     %ax, %ds
        mov     $0x3f8, %dx
        mov     $banner, %si
1:      lodsb
        test    %al, %al
        jz      echo
        out     %al, %dx
        jmp     1b
echo:
        mov     $0x3fd, %dx             # line status: bit 0 = data ready
2:      in      %dx, %al
        test    $1, %al
        jz      2b
        mov     $0x3f8, %dx
        in      %dx, %al
        out     %al, %dx
        jmp     echo
banner: .asciz  "rqemu demo guest: type something, it is echoed back\r\n"

        .org    0xfff0
        ljmp    $0xf000, $start
        .org    0x10000
