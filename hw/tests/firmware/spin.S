# Writes an incrementing byte to port 0x80 forever (a stream of port exits).
        .code16
        .text
start:
        xor     %al, %al
1:      out     %al, $0x80
        inc     %al
        jmp     1b

        .org    0xfff0
        ljmp    $0xf000, $start
        .org    0x10000
