# Enables the power button event, writes 'R' to COM1, polls PM1_STS (0x600) until
# PWRBTN_STS is set, writes 'P', clears the status and powers off through PM1_CNT
# (SLP_TYP 0 = S5, SLP_EN).
        .code16
        .text
start:
        mov     $0x602, %dx
        mov     $0x0100, %ax
        out     %ax, %dx
        mov     $0x3f8, %dx
        mov     $'R', %al
        out     %al, %dx
        mov     $0x600, %dx
1:      in      %dx, %ax
        test    $0x0100, %ax
        jz      1b
        out     %ax, %dx
        mov     $0x3f8, %dx
        mov     $'P', %al
        out     %al, %dx
        mov     $0x604, %dx
        mov     $0x2000, %ax
        out     %ax, %dx
2:      hlt
        jmp     2b

        .org    0xfff0
        ljmp    $0xf000, $start
        .org    0x10000
