//! `-h`/`-help` text: the options this binary accepts.

pub fn help_text() -> String {
    let mut s = crate::version::version_banner();
    s.push_str(
        "usage: qemu-system-x86_64 [options]

Standard options:
-h or -help     display this help and exit
-version        display version information and exit
-machine [type=]name[,prop[=value][,...]]
                selects emulated machine ('-machine help' for list)
                property accel=accel1[:accel2[:...]] selects accelerator
                supported accelerators are kvm, qtest
-M name         same as -machine name
-accel [accel=]accelerator
                select accelerator (kvm, qtest)
-smp [cpus=]n[,maxcpus=cpus][,cores=cores][,threads=threads][,sockets=sockets]
                set the number of CPUs to 'n' [default=1]
-m [size=]megs[,slots=n,maxmem=size]
                configure guest RAM (suffixes k, M, G, T; bare numbers are MiB)
-name string1[,process=string2][,debug-threads=on|off]
                set the name of the guest
-uuid %08x-%04x-%04x-%04x-%012x
                specify machine UUID
-object TYPENAME[,PROP1=VALUE1,...]
                create a new object of type TYPENAME

Display options:
-display none   select display type (only 'none' exists here)
-nographic      disable graphical output and redirect serial I/Os to console

Character device options:
-chardev null,id=id[,mux=on|off][,logfile=PATH][,logappend=on|off]
-chardev socket,id=id[,host=host],port=port[,server][,nowait][,telnet][,reconnect=seconds]
-chardev socket,id=id,path=path[,server][,nowait][,telnet][,reconnect=seconds]
-chardev stdio,id=id[,signal=on|off]

Debug/Expert options:
-serial dev     redirect the serial port to char device 'dev'
-monitor dev    redirect the monitor to char device 'dev'
-qmp dev        like -monitor but opens in 'control' mode
-qmp-pretty dev like -qmp but uses pretty JSON formatting
-mon [chardev=]name[,mode=readline|control][,pretty=on|off]
-pidfile file   write PID to 'file'
-S              freeze CPU at startup (use 'c' to start execution)
-no-reboot      exit instead of rebooting
-no-shutdown    stop before shutdown
-daemonize      daemonize QEMU after initializing
-nodefaults     don't create default devices
-incoming uri   wait for an incoming migration on 'uri'
-add-fd fd=fd,set=set[,opaque=opaque]
                pass a file descriptor to an fd set
-qtest chardev  run the qtest protocol on 'chardev' (use with -machine accel=qtest)
-qtest-log file log qtest traffic to 'file'

During emulation, the monitor's 'help' command lists its commands.
",
    );
    s
}
