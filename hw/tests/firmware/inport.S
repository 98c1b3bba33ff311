# Reads port 0x71 and echoes the byte to port 0x80, twice (the second after setting
# index 0x40 through port 0x70).
        .code16
        .text
start:
        in      $0x71, %al
        out     %al, $0x80
        mov     $0x40, %al
        out     %al, $0x70
        mov     $0x5a, %al
        out     %al, $0x71
        in      $0x71, %al
        out     %al, $0x80
        mov     $0x501, %dx
        out     %al, %dx
1:      hlt
        jmp     1b

        .org    0xfff0
        ljmp    $0xf000, $start
        .org    0x10000
