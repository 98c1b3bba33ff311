# Test firmware for the iotests (GNU as, 16-bit real mode at the reset
# vector; a 64 KiB image, so the PC maps it at 0xffff0000 and 0xf0000).
#
# It prints "fw: start" on COM1, then runs the mode given by the byte at
# physical 0x7200 (tests put it there with -device loader,data=...):
#   0 hello: prints the string at 0x7000 (if any), then writes the byte at
#     0x7100 to isa-debug-exit (port 0x501) and halts
#   1 S5: powers off through the ACPI PM1 control register
#   2 power button: enables the power-button event, polls PM1 status for it,
#     then powers off through S5
#   3 reset chain: boot counter in CMOS NVRAM byte 0x40; boot 0 resets via
#     the i8042 (0xfe to port 0x64), boot 1 via port 0xcf9, boot 2 exits
#     through isa-debug-exit with the byte at 0x7100
#   4 boot counter: prints and bumps CMOS byte 0x40, overwrites the mode
#     byte, then halts
#   5 triple fault: protected mode with an empty IDT, then a bad selector
#   6 counter: increments the dword at 0x6000 forever
#   7 SMP: INIT/SIPI to the other CPUs; an AP sets 0x7300 and halts; the BSP
#     prints once it sees that
#   8 int3 through a handler, then XRSTOR (a KVM internal error under
#     kvm_pvm, whose instruction emulator lacks it)
#   9 registers: loads known values and halts with interrupts off
#  10 NMI: points the NMI vector at a handler that prints, then halts
#  11 S3: suspends to RAM through PM1 control (SLP_TYP 1)
# An alternative entry at offset 0x1000 (for -device loader,cpu-num=) prints
# "fw: entry 0x1000" and halts.
        .code16
        .text
start:
        cli
        cld
        mov     %cs, %ax
        mov     %ax, %ds
        xor     %ax, %ax
        mov     %ax, %es
        mov     $msg_start, %si
        call    puts
        movzbw  %es:0x7200, %bx
        cmp     $12, %bx
        jae     mode_hello
        shl     $1, %bx
        jmp     *modes(%bx)

modes:
        .word   mode_hello, mode_s5, mode_pwrbtn, mode_resets, mode_bootcount
        .word   mode_triple, mode_count, mode_smp, mode_int3, mode_regs, mode_nmi
        .word   mode_s3

# Prints the NUL-terminated string at DS:SI on COM1.
puts:
        mov     $0x3f8, %dx
1:      lodsb
        test    %al, %al
        jz      2f
        out     %al, %dx
        jmp     1b
2:      ret

# Prints the digit in AL, then a newline.
putdigit:
        mov     $0x3f8, %dx
        add     $'0', %al
        out     %al, %dx
        mov     $'\n', %al
        out     %al, %dx
        ret

halt:
        cli
1:      hlt
        jmp     1b

debug_exit:
        mov     %es:0x7100, %al
        mov     $0x501, %dx
        out     %al, %dx
        jmp     halt

mode_hello:
        mov     $0x7000, %si
        mov     $0x3f8, %dx
1:      mov     %es:(%si), %al
        test    %al, %al
        jz      debug_exit
        out     %al, %dx
        inc     %si
        cmp     $0x7100, %si
        jb      1b
        jmp     debug_exit

s5:
        mov     $0x604, %dx
        mov     $0x2000, %ax
        out     %ax, %dx
        jmp     halt

mode_s5:
        mov     $msg_s5, %si
        call    puts
        jmp     s5

mode_pwrbtn:
        mov     $0x602, %dx
        mov     $0x0100, %ax
        out     %ax, %dx
        mov     $msg_wait_pwrbtn, %si
        call    puts
        mov     $0x600, %dx
1:      in      %dx, %ax
        test    $0x0100, %ax
        jz      1b
        out     %ax, %dx
        mov     $msg_pwrbtn, %si
        call    puts
        jmp     s5

# Reads CMOS byte 0x40 into BL, prints "fw: boot N" and stores N+1.
bootcount:
        mov     $msg_boot, %si
        call    puts
        mov     $0x40, %al
        out     %al, $0x70
        in      $0x71, %al
        mov     %al, %bl
        call    putdigit
        mov     $0x40, %al
        out     %al, $0x70
        mov     %bl, %al
        inc     %al
        out     %al, $0x71
        ret

mode_resets:
        call    bootcount
        cmp     $0, %bl
        jne     1f
        mov     $0xfe, %al
        out     %al, $0x64
        jmp     halt
1:      cmp     $1, %bl
        jne     debug_exit
        mov     $0xcf9, %dx
        mov     $0x06, %al
        out     %al, %dx
        jmp     halt

mode_bootcount:
        call    bootcount
        # Clobbers its own mode byte: only a loader applied again at reset
        # brings this mode back on the next boot.
        movb    $0xff, %es:0x7200
        jmp     halt

# Copies the GDT to 0x500 (descriptor tables must be in RAM) and loads it.
load_gdt:
        mov     $gdt, %si
        mov     $0x500, %di
        mov     $(gdt_end - gdt), %cx
        rep movsb
        lgdtl   gdtr
        ret

mode_triple:
        mov     $msg_triple, %si
        call    puts
        call    load_gdt
        lidtl   idtr_empty
        mov     %cr0, %eax
        or      $1, %eax
        mov     %eax, %cr0
        ljmpl   $0x08, $(0xf0000 + triple32)

mode_count:
        mov     $msg_count, %si
        call    puts
1:      incl    %es:0x6000
        jmp     1b

mode_smp:
        movb    $0, %es:0x7300
        mov     $ap, %si
        mov     $0x8000, %di
        mov     $(ap_end - ap), %cx
        rep movsb
        call    load_gdt
        mov     %cr0, %eax
        or      $1, %eax
        mov     %eax, %cr0
        ljmpl   $0x08, $(0xf0000 + smp32)

mode_int3:
        movw    $int3_handler, %es:0xc
        movw    $0xf000, %es:0xe
        mov     $msg_int3, %si
        call    puts
        int3
        mov     $msg_after_int3, %si
        call    puts
        mov     %cr4, %eax
        or      $0x40000, %eax
        mov     %eax, %cr4
        mov     $3, %eax
        xor     %edx, %edx
        mov     $0x7400, %di
        xrstor  %es:(%di)
        mov     $msg_after_xrstor, %si
        call    puts
        jmp     halt

int3_handler:
        mov     $msg_int3_handler, %si
        call    puts
        iret

mode_regs:
        mov     $msg_regs, %si
        call    puts
        mov     $0x12345678, %eax
        mov     $0x9abcdef0, %ebx
        mov     $0x0badcafe, %ecx
        mov     $0x600dd00d, %edx
1:      hlt
regs_halted:                    # where EIP stands while halted (iotest 122)
        jmp     1b

mode_nmi:
        movw    $nmi_handler, %es:0x8
        movw    $0xf000, %es:0xa
        mov     $msg_wait_nmi, %si
        call    puts
        jmp     halt

nmi_handler:
        mov     %cs, %ax
        mov     %ax, %ds
        mov     $msg_nmi, %si
        call    puts
        jmp     halt

mode_s3:
        mov     $msg_s3, %si
        call    puts
        mov     $0x604, %dx
        mov     $0x2400, %ax
        out     %ax, %dx
        jmp     halt

        .code32
triple32:
        mov     $0x58, %ax
        mov     %ax, %ds
        hlt

smp32:
        mov     $0x10, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        movl    $0x000c4500, 0xfee00300
        movl    $0x000c4608, 0xfee00300
1:      cmpb    $1, 0x7300
        jne     1b
        mov     $(0xf0000 + msg_ap), %esi
        mov     $0x3f8, %dx
2:      lodsb
        test    %al, %al
        jz      3f
        out     %al, %dx
        jmp     2b
3:      hlt
        jmp     3b

# Runs at 0x8000 on the APs (SIPI vector 0x08), copied there by the BSP.
        .code16
ap:
        xor     %ax, %ax
        mov     %ax, %ds
        movb    $1, 0x7300
1:      cli
        hlt
        jmp     1b
ap_end:

        .p2align 3
gdt:    .quad   0
        .quad   0x00cf9a000000ffff
        .quad   0x00cf92000000ffff
gdt_end:
gdtr:   .word   gdt_end - gdt - 1
        .long   0x500
idtr_empty:
        .word   0
        .long   0

msg_start:      .asciz  "fw: start\n"
msg_s5:         .asciz  "fw: S5\n"
msg_wait_pwrbtn: .asciz "fw: waiting for the power button\n"
msg_pwrbtn:     .asciz  "fw: power button pressed\n"
msg_boot:       .asciz  "fw: boot "
msg_triple:     .asciz  "fw: triple fault\n"
msg_count:      .asciz  "fw: counting\n"
msg_ap:         .asciz  "fw: AP started\n"
msg_int3:       .asciz  "fw: int3\n"
msg_int3_handler: .asciz "fw: int3 handler\n"
msg_after_int3: .asciz  "fw: after int3, xrstor next\n"
msg_after_xrstor: .asciz "fw: after xrstor\n"
msg_regs:       .asciz  "fw: registers loaded\n"
msg_wait_nmi:   .asciz  "fw: waiting for NMI\n"
msg_nmi:        .asciz  "fw: NMI\n"
msg_s3:         .asciz  "fw: S3\n"
msg_entry:      .asciz  "fw: entry 0x1000\n"

        .org    0x1000
entry_1000:
        mov     %cs, %ax
        mov     %ax, %ds
        mov     $msg_entry, %si
        call    puts
        jmp     halt

        .org    0xfff0
        ljmp    $0xf000, $start
        .org    0x10000
