//! The machine types this binary offers, as `-M help` and query-machines
//! show them.

pub struct MachineType {
    pub name: &'static str,
    pub alias: Option<&'static str>,
    pub desc: &'static str,
    pub is_default: bool,
    pub cpu_max: u32,
    pub hotpluggable_cpus: bool,
    /// QOM type of the machine object at /machine.
    pub qom_type: &'static str,
}

pub static MACHINE_TYPES: &[MachineType] = &[
    MachineType {
        name: "pc-i440fx-2.8",
        alias: Some("pc"),
        desc: "Standard PC (i440FX + PIIX, 1996)",
        is_default: true,
        cpu_max: 255,
        hotpluggable_cpus: true,
        qom_type: "pc-i440fx-2.8-machine",
    },
    MachineType {
        name: "none",
        alias: None,
        desc: "empty machine",
        is_default: false,
        cpu_max: 1,
        hotpluggable_cpus: false,
        qom_type: "none-machine",
    },
];

pub fn find(name: &str) -> Option<&'static MachineType> {
    MACHINE_TYPES
        .iter()
        .find(|m| m.name == name || m.alias == Some(name))
}

pub fn default_type() -> &'static MachineType {
    &MACHINE_TYPES[0]
}

pub fn help_text() -> String {
    let mut s = String::from("Supported machines are:\n");
    for m in MACHINE_TYPES {
        if let Some(a) = m.alias {
            s.push_str(&format!("{a:<20} {} (alias of {})\n", m.desc, m.name));
        }
        let def = if m.is_default { " (default)" } else { "" };
        s.push_str(&format!("{:<20} {}{def}\n", m.name, m.desc));
    }
    s
}
