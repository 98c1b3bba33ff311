# Boot count in CMOS NVRAM byte 0x40: prints it as a digit on COM1, then
# boot 0: sets it to 1 and resets through the i8042 (0xFE pulse);
# boot 1: sets it to 2 and resets through 0xCF9;
# boot 2: writes 0x10 to isa-debug-exit (0x501).
        .code16
        .text
start:
        mov     $0x40, %al
        out     %al, $0x70
        in      $0x71, %al
        mov     %al, %bl
        add     $'0', %al
        mov     $0x3f8, %dx
        out     %al, %dx
        mov     $0x40, %al
        out     %al, $0x70
        mov     %bl, %al
        inc     %al
        out     %al, $0x71
        cmp     $0, %bl
        jne     1f
        mov     $0xfe, %al
        out     %al, $0x64
        jmp     9f
1:      cmp     $1, %bl
        jne     2f
        mov     $0xcf9, %dx
        mov     $0x06, %al
        out     %al, %dx
        jmp     9f
2:      mov     $0x501, %dx
        mov     $0x10, %al
        out     %al, %dx
9:      hlt
        jmp     9b

        .org    0xfff0
        ljmp    $0xf000, $start
        .org    0x10000
