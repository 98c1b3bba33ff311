# Sends a 40-byte message to COM1 with REP OUTSB, 50 times, then writes 0x11 to
# isa-debug-exit.
        .code16
        .text
start:
        cld
        mov     %cs, %ax
        mov     %ax, %ds
        mov     $50, %bx
1:      mov     $msg, %si
        mov     $(msg_end - msg), %cx
        mov     $0x3f8, %dx
        rep outsb
        dec     %bx
        jnz     1b
        mov     $0x501, %dx
        mov     $0x11, %al
        out     %al, %dx
2:      hlt
        jmp     2b
msg:    .ascii  "0123456789abcdefghijklmnopqrstuvwxyzABCD"
msg_end:

        .org    0xfff0
        ljmp    $0xf000, $start
        .org    0x10000
