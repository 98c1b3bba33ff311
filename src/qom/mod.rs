//! The QOM composition tree as clients see it: `/machine` with its
//! `unattached`, `peripheral` and `peripheral-anon` containers,
//! `/objects/<id>` for user-created objects, `/chardevs/<id>`.

pub struct QomNode {
    pub name: String,
    pub type_name: String,
    pub parent: Option<usize>,
    pub children: Vec<usize>,
}

pub struct Qom {
    nodes: Vec<Option<QomNode>>,
}

impl Default for Qom {
    fn default() -> Self {
        Self::new()
    }
}

impl Qom {
    pub fn new() -> Self {
        let mut q = Qom { nodes: Vec::new() };
        q.nodes.push(Some(QomNode {
            name: String::new(),
            type_name: "container".into(),
            parent: None,
            children: Vec::new(),
        }));
        q
    }

    pub fn add_child(&mut self, parent: usize, name: &str, type_name: &str) -> usize {
        let idx = self.nodes.len();
        self.nodes.push(Some(QomNode {
            name: name.to_string(),
            type_name: type_name.to_string(),
            parent: Some(parent),
            children: Vec::new(),
        }));
        if let Some(Some(p)) = self.nodes.get_mut(parent) {
            p.children.push(idx);
        }
        idx
    }

    pub fn node(&self, idx: usize) -> Option<&QomNode> {
        self.nodes.get(idx).and_then(Option::as_ref)
    }

    /// Resolves an absolute path such as `/machine/unattached`.
    pub fn resolve(&self, path: &str) -> Option<usize> {
        let rest = path.strip_prefix('/')?;
        let mut cur = 0usize;
        for comp in rest.split('/').filter(|c| !c.is_empty()) {
            let n = self.node(cur)?;
            cur = *n
                .children
                .iter()
                .find(|&&c| self.node(c).is_some_and(|x| x.name == comp))?;
        }
        Some(cur)
    }

    pub fn path_exists(&self, path: &str) -> bool {
        self.resolve(path).is_some()
    }
}

pub mod objects;

use crate::emulator::Emulator;

/// Creates the containers every machine has.
pub fn populate_machine(emu: &mut Emulator) {
    let qom_type = emu.machine.mtype.qom_type;
    let machine = emu.qom.add_child(0, "machine", qom_type);
    emu.qom.add_child(machine, "unattached", "container");
    emu.qom.add_child(machine, "peripheral", "container");
    emu.qom.add_child(machine, "peripheral-anon", "container");
    emu.qom.add_child(0, "objects", "container");
    emu.qom.add_child(0, "chardevs", "container");
}
