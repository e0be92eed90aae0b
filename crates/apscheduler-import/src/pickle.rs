//! A safe reader for Python pickles (protocols 2 to 5): a stack machine over the opcodes that
//! produces a tree of [`Value`]s. It never executes or imports anything: a global is a name, a
//! REDUCE or NEWOBJ is a [`Call`] recording what would have been called with what, and a BUILD
//! is the state kept on that call. What the names mean is for the caller to decide.
//!
//! Bounded: input over [`Limits::max_bytes`], a tree deeper than [`Limits::max_depth`] or
//! larger than [`Limits::max_nodes`] (shared references count each time they are reached, so a
//! pickle that doubles itself cannot blow up) is refused with an error, never a panic.

use std::fmt;

/// How much a pickle may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest pickle read.
    pub max_bytes: usize,
    /// The deepest nesting of containers and calls.
    pub max_depth: usize,
    /// The most values in the tree, counting a shared value each time it is reached.
    pub max_nodes: usize,
}

impl Default for Limits {
    /// 1 MiB, 64 levels, 200,000 values: far beyond a scheduler job's state (about 2 KiB, 12
    /// levels), far below what hurts.
    fn default() -> Self {
        Limits {
            max_bytes: 1 << 20,
            max_depth: 64,
            max_nodes: 200_000,
        }
    }
}

/// Why a pickle could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickleError {
    #[error("the pickle is {len} bytes, over the limit of {limit}")]
    TooLarge { len: usize, limit: usize },
    #[error("the pickle ends early, at byte {0}")]
    Truncated(usize),
    #[error("unsupported pickle opcode 0x{opcode:02x} at byte {at}")]
    Opcode { opcode: u8, at: usize },
    #[error("unsupported pickle protocol {0}")]
    Protocol(u8),
    #[error("malformed pickle at byte {at}: {what}")]
    Malformed { at: usize, what: String },
    #[error("the pickle nests deeper than {0} levels")]
    TooDeep(usize),
    #[error("the pickle holds more than {0} values")]
    TooMany(usize),
}

/// A value read from a pickle.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer too large for 64 bits: its little-endian two's-complement bytes.
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    /// Entries in the order they were set.
    Dict(Vec<(Value, Value)>),
    Set(Vec<Value>),
    /// A reference to `module.name` (a class or a function), never resolved.
    Global {
        module: String,
        name: String,
    },
    /// What unpickling would have called: REDUCE, NEWOBJ or NEWOBJ_EX, with its BUILD state.
    Call(Box<Call>),
}

/// A call recorded instead of made.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// What is called: usually a [`Value::Global`], or another call (`getattr(cls, name)`).
    pub callable: Value,
    /// The positional arguments (a tuple, or whatever the pickle gave).
    pub args: Value,
    /// Keyword arguments of NEWOBJ_EX.
    pub kwargs: Option<Value>,
    /// Whether this is `cls.__new__(cls, *args)` (NEWOBJ) rather than `callable(*args)`.
    pub new: bool,
    /// The state BUILD gave the result.
    pub state: Option<Value>,
    /// Items set on the result (SETITEM(S) on a dict subclass).
    pub items: Vec<(Value, Value)>,
    /// Items appended to the result (APPEND(S) on a list subclass).
    pub appended: Vec<Value>,
}

impl Value {
    /// The value of a string key in a dict.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(entries) => entries
                .iter()
                .rev()
                .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// The items of a tuple or a list.
    pub fn items(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(items) | Value::List(items) => Some(items),
            _ => None,
        }
    }

    /// The call, when this is one.
    pub fn call(&self) -> Option<&Call> {
        match self {
            Value::Call(call) => Some(call),
            _ => None,
        }
    }

    /// `(module, name)` of a global.
    pub fn global(&self) -> Option<(&str, &str)> {
        match self {
            Value::Global { module, name } => Some((module, name)),
            _ => None,
        }
    }

    /// What this value is, for errors: `int`, `dict`, `datetime.datetime(...)`.
    pub fn describe(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) | Value::BigInt(_) => "int".into(),
            Value::Float(_) => "float".into(),
            Value::Str(_) => "str".into(),
            Value::Bytes(_) => "bytes".into(),
            Value::List(_) => "list".into(),
            Value::Tuple(_) => "tuple".into(),
            Value::Dict(_) => "dict".into(),
            Value::Set(_) => "set".into(),
            Value::Global { module, name } => format!("{module}.{name}"),
            Value::Call(call) => format!("{}(...)", call.callable.describe()),
        }
    }
}

impl Call {
    /// `(module, name)` of the global called, or of the class built by NEWOBJ.
    pub fn class(&self) -> Option<(&str, &str)> {
        self.callable.global()
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Reads one pickle within the limits.
pub fn parse(data: &[u8], limits: Limits) -> Result<Value, PickleError> {
    if data.len() > limits.max_bytes {
        return Err(PickleError::TooLarge {
            len: data.len(),
            limit: limits.max_bytes,
        });
    }
    let (arena, root) = Machine::new(data, limits).run()?;
    let mut budget = limits.max_nodes;
    arena.materialize(root, 0, &limits, &mut budget)
}

/// An index into the machine's arena of nodes: BINGET pushes the same node again, so what is
/// shared in the pickle is shared here, and filling a memoized dict fills it everywhere.
type NodeId = usize;

#[derive(Debug)]
enum Node {
    None,
    Bool(bool),
    Int(i64),
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<NodeId>),
    Tuple(Vec<NodeId>),
    Dict(Vec<(NodeId, NodeId)>),
    Set(Vec<NodeId>),
    Global {
        module: String,
        name: String,
    },
    Call {
        callable: NodeId,
        args: NodeId,
        kwargs: Option<NodeId>,
        new: bool,
        state: Option<NodeId>,
        items: Vec<(NodeId, NodeId)>,
        appended: Vec<NodeId>,
    },
}

struct Arena {
    nodes: Vec<Node>,
}

impl Arena {
    fn materialize(
        &self,
        id: NodeId,
        depth: usize,
        limits: &Limits,
        budget: &mut usize,
    ) -> Result<Value, PickleError> {
        if depth > limits.max_depth {
            return Err(PickleError::TooDeep(limits.max_depth));
        }
        if *budget == 0 {
            return Err(PickleError::TooMany(limits.max_nodes));
        }
        *budget -= 1;
        let go = |id: NodeId, budget: &mut usize| self.materialize(id, depth + 1, limits, budget);
        Ok(match &self.nodes[id] {
            Node::None => Value::None,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(i) => Value::Int(*i),
            Node::BigInt(bytes) => Value::BigInt(bytes.clone()),
            Node::Float(x) => Value::Float(*x),
            Node::Str(s) => Value::Str(s.clone()),
            Node::Bytes(b) => Value::Bytes(b.clone()),
            Node::List(items) => Value::List(
                items
                    .iter()
                    .map(|&i| go(i, budget))
                    .collect::<Result<_, _>>()?,
            ),
            Node::Tuple(items) => Value::Tuple(
                items
                    .iter()
                    .map(|&i| go(i, budget))
                    .collect::<Result<_, _>>()?,
            ),
            Node::Set(items) => Value::Set(
                items
                    .iter()
                    .map(|&i| go(i, budget))
                    .collect::<Result<_, _>>()?,
            ),
            Node::Dict(entries) => Value::Dict(
                entries
                    .iter()
                    .map(|&(k, v)| Ok((go(k, budget)?, go(v, budget)?)))
                    .collect::<Result<_, PickleError>>()?,
            ),
            Node::Global { module, name } => Value::Global {
                module: module.clone(),
                name: name.clone(),
            },
            Node::Call {
                callable,
                args,
                kwargs,
                new,
                state,
                items,
                appended,
            } => Value::Call(Box::new(Call {
                callable: go(*callable, budget)?,
                args: go(*args, budget)?,
                kwargs: kwargs.map(|k| go(k, budget)).transpose()?,
                new: *new,
                state: state.map(|s| go(s, budget)).transpose()?,
                items: items
                    .iter()
                    .map(|&(k, v)| Ok((go(k, budget)?, go(v, budget)?)))
                    .collect::<Result<_, PickleError>>()?,
                appended: appended
                    .iter()
                    .map(|&i| go(i, budget))
                    .collect::<Result<_, _>>()?,
            })),
        })
    }
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    /// Where the opcode being run began, for errors.
    at: usize,
    limits: Limits,
    arena: Arena,
    stack: Vec<NodeId>,
    marks: Vec<usize>,
    memo: std::collections::HashMap<u32, NodeId>,
}

impl<'a> Machine<'a> {
    fn new(data: &'a [u8], limits: Limits) -> Self {
        Machine {
            data,
            pos: 0,
            at: 0,
            limits,
            arena: Arena { nodes: Vec::new() },
            stack: Vec::new(),
            marks: Vec::new(),
            memo: std::collections::HashMap::new(),
        }
    }

    fn malformed(&self, what: impl Into<String>) -> PickleError {
        PickleError::Malformed {
            at: self.at,
            what: what.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len())
            .ok_or(PickleError::Truncated(self.data.len()))?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn uint(&mut self, width: usize) -> Result<u64, PickleError> {
        let bytes = self.take(width)?;
        Ok(bytes
            .iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// A length read as `width` little-endian bytes, refused when it runs past the input.
    fn length(&mut self, width: usize) -> Result<usize, PickleError> {
        let len = self.uint(width)?;
        usize::try_from(len)
            .ok()
            .filter(|&len| len <= self.data.len() - self.pos)
            .ok_or(PickleError::Truncated(self.data.len()))
    }

    fn line(&mut self) -> Result<&'a str, PickleError> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated(self.data.len()))?;
        self.pos += end + 1;
        std::str::from_utf8(&rest[..end]).map_err(|_| self.malformed("a line that is not UTF-8"))
    }

    fn push(&mut self, node: Node) -> Result<(), PickleError> {
        if self.arena.nodes.len() >= self.limits.max_nodes {
            return Err(PickleError::TooMany(self.limits.max_nodes));
        }
        self.arena.nodes.push(node);
        self.stack.push(self.arena.nodes.len() - 1);
        Ok(())
    }

    fn pop(&mut self) -> Result<NodeId, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.malformed("the stack is empty"));
        }
        Ok(self.stack.pop().unwrap_or_default())
    }

    fn top(&self) -> Result<NodeId, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.malformed("the stack is empty"));
        }
        Ok(self.stack[self.stack.len() - 1])
    }

    /// The items above the last mark, and the mark removed.
    fn pop_mark(&mut self) -> Result<Vec<NodeId>, PickleError> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| self.malformed("no mark on the stack"))?;
        Ok(self.stack.split_off(mark))
    }

    fn text(&self, bytes: &[u8]) -> Result<String, PickleError> {
        String::from_utf8(bytes.to_vec()).map_err(|_| self.malformed("a string that is not UTF-8"))
    }

    fn memo_put(&mut self, key: u32) -> Result<(), PickleError> {
        let top = self.top()?;
        if self.memo.len() >= self.limits.max_nodes && !self.memo.contains_key(&key) {
            return Err(PickleError::TooMany(self.limits.max_nodes));
        }
        self.memo.insert(key, top);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Result<(), PickleError> {
        let id = u32::try_from(key)
            .ok()
            .and_then(|key| self.memo.get(&key).copied())
            .ok_or_else(|| self.malformed(format!("memo entry {key} was never stored")))?;
        self.stack.push(id);
        Ok(())
    }

    fn add_items(&mut self, target: NodeId, pairs: &[NodeId]) -> Result<(), PickleError> {
        if !pairs.len().is_multiple_of(2) {
            return Err(self.malformed("SETITEMS with an odd number of values"));
        }
        let pairs = pairs.chunks(2).map(|p| (p[0], p[1]));
        match &mut self.arena.nodes[target] {
            Node::Dict(entries) => entries.extend(pairs),
            Node::Call { items, .. } => items.extend(pairs),
            _ => return Err(self.malformed("SETITEM on something that is not a dict")),
        }
        Ok(())
    }

    fn append(&mut self, target: NodeId, values: &[NodeId]) -> Result<(), PickleError> {
        match &mut self.arena.nodes[target] {
            Node::List(items) | Node::Set(items) => items.extend_from_slice(values),
            Node::Call { appended, .. } => appended.extend_from_slice(values),
            _ => return Err(self.malformed("APPEND on something that is not a list")),
        }
        Ok(())
    }

    fn run(mut self) -> Result<(Arena, NodeId), PickleError> {
        loop {
            self.at = self.pos;
            let opcode = self.byte()?;
            if opcode == b'.' {
                let root = self.pop()?;
                return Ok((self.arena, root));
            }
            let known = self.stack_op(opcode)?
                || self.number(opcode)?
                || self.string(opcode)?
                || self.collection(opcode)?
                || self.object(opcode)?
                || self.memo(opcode)?;
            if !known {
                // Persistent ids, the extension registry, out-of-band buffers, INST and OBJ
                // (protocol 0 and 1 classes), text strings: never written by APScheduler.
                return Err(PickleError::Opcode {
                    opcode,
                    at: self.at,
                });
            }
            if self.stack.len() > self.limits.max_nodes {
                return Err(PickleError::TooMany(self.limits.max_nodes));
            }
            if self.marks.len() > self.limits.max_depth {
                return Err(PickleError::TooDeep(self.limits.max_depth));
            }
        }
    }

    /// The protocol, framing and stack opcodes (marks, pops, dup). Returns whether `opcode` is one of them.
    fn stack_op(&mut self, opcode: u8) -> Result<bool, PickleError> {
        match opcode {
            // PROTO
            0x80 => {
                let protocol = self.byte()?;
                if !(2..=5).contains(&protocol) {
                    return Err(PickleError::Protocol(protocol));
                }
            }
            // FRAME: a length hint, nothing to do.
            0x95 => {
                self.take(8)?;
            }
            b'(' => self.marks.push(self.stack.len()),
            b'0' => {
                self.pop()?;
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let top = self.top()?;
                self.stack.push(top);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The opcodes that push `None`, a bool, an int or a float. Returns whether `opcode` is one of them.
    fn number(&mut self, opcode: u8) -> Result<bool, PickleError> {
        match opcode {
            b'N' => self.push(Node::None)?,
            0x88 => self.push(Node::Bool(true))?,
            0x89 => self.push(Node::Bool(false))?,
            b'K' => {
                let v = self.uint(1)?;
                self.push(Node::Int(v as i64))?;
            }
            b'M' => {
                let v = self.uint(2)?;
                self.push(Node::Int(v as i64))?;
            }
            b'J' => {
                let v = self.uint(4)? as u32 as i32;
                self.push(Node::Int(i64::from(v)))?;
            }
            // LONG1, LONG4: little-endian two's complement.
            0x8a | 0x8b => {
                let len = self.length(if opcode == 0x8a { 1 } else { 4 })?;
                let bytes = self.take(len)?;
                self.push(long(bytes))?;
            }
            b'I' => {
                let line = self.line()?;
                let node = match line {
                    "01" => Node::Bool(true),
                    "00" => Node::Bool(false),
                    other => Node::Int(
                        other
                            .trim()
                            .parse()
                            .map_err(|_| self.malformed(format!("INT '{other}'")))?,
                    ),
                };
                self.push(node)?;
            }
            b'L' => {
                let line = self.line()?;
                let digits = line.trim().trim_end_matches('L');
                let value = digits
                    .parse()
                    .map_err(|_| self.malformed(format!("LONG '{line}'")))?;
                self.push(Node::Int(value))?;
            }
            b'G' => {
                let bytes = self.take(8)?;
                let mut array = [0u8; 8];
                array.copy_from_slice(bytes);
                self.push(Node::Float(f64::from_be_bytes(array)))?;
            }
            b'F' => {
                let line = self.line()?;
                let value = line
                    .trim()
                    .parse()
                    .map_err(|_| self.malformed(format!("FLOAT '{line}'")))?;
                self.push(Node::Float(value))?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The opcodes that push a string or bytes. Returns whether `opcode` is one of them.
    fn string(&mut self, opcode: u8) -> Result<bool, PickleError> {
        match opcode {
            // SHORT_BINUNICODE, BINUNICODE, BINUNICODE8
            0x8c | b'X' | 0x8d => {
                let width = match opcode {
                    0x8c => 1,
                    b'X' => 4,
                    _ => 8,
                };
                let len = self.length(width)?;
                let bytes = self.take(len)?;
                let text = self.text(bytes)?;
                self.push(Node::Str(text))?;
            }
            // SHORT_BINBYTES, BINBYTES, BINBYTES8, BYTEARRAY8
            b'C' | b'B' | 0x8e | 0x96 => {
                let width = match opcode {
                    b'C' => 1,
                    b'B' => 4,
                    _ => 8,
                };
                let len = self.length(width)?;
                let bytes = self.take(len)?.to_vec();
                self.push(Node::Bytes(bytes))?;
            }
            // SHORT_BINSTRING, BINSTRING: Python 2 str, read as Latin-1.
            b'U' | b'T' => {
                let len = self.length(if opcode == b'U' { 1 } else { 4 })?;
                let bytes = self.take(len)?;
                self.push(Node::Str(bytes.iter().map(|&b| char::from(b)).collect()))?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The opcodes that build lists, tuples, dicts and sets. Returns whether `opcode` is one of them.
    fn collection(&mut self, opcode: u8) -> Result<bool, PickleError> {
        match opcode {
            b']' => self.push(Node::List(Vec::new()))?,
            b')' => self.push(Node::Tuple(Vec::new()))?,
            b'}' => self.push(Node::Dict(Vec::new()))?,
            0x8f => self.push(Node::Set(Vec::new()))?,
            b'l' => {
                let items = self.pop_mark()?;
                self.push(Node::List(items))?;
            }
            b't' => {
                let items = self.pop_mark()?;
                self.push(Node::Tuple(items))?;
            }
            // FROZENSET
            0x91 => {
                let items = self.pop_mark()?;
                self.push(Node::Set(items))?;
            }
            b'd' => {
                let items = self.pop_mark()?;
                self.push(Node::Dict(Vec::new()))?;
                let dict = self.top()?;
                self.add_items(dict, &items)?;
            }
            0x85..=0x87 => {
                let n = usize::from(opcode - 0x84);
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.pop()?);
                }
                items.reverse();
                self.push(Node::Tuple(items))?;
            }
            b'a' => {
                let value = self.pop()?;
                let list = self.top()?;
                self.append(list, &[value])?;
            }
            b'e' => {
                let items = self.pop_mark()?;
                let list = self.top()?;
                self.append(list, &items)?;
            }
            // ADDITEMS
            0x90 => {
                let items = self.pop_mark()?;
                let set = self.top()?;
                self.append(set, &items)?;
            }
            b's' => {
                let value = self.pop()?;
                let key = self.pop()?;
                let dict = self.top()?;
                self.add_items(dict, &[key, value])?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                let dict = self.top()?;
                self.add_items(dict, &items)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The opcodes that name a global, call it, or set an object's state. Returns whether `opcode` is one of them.
    fn object(&mut self, opcode: u8) -> Result<bool, PickleError> {
        match opcode {
            b'c' => {
                let module = self.line()?.to_string();
                let name = self.line()?.to_string();
                self.push(Node::Global { module, name })?;
            }
            // STACK_GLOBAL
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                match (&self.arena.nodes[module], &self.arena.nodes[name]) {
                    (Node::Str(module), Node::Str(name)) => {
                        let (module, name) = (module.clone(), name.clone());
                        self.push(Node::Global { module, name })?;
                    }
                    _ => return Err(self.malformed("STACK_GLOBAL without two strings")),
                }
            }
            b'R' => {
                let args = self.pop()?;
                let callable = self.pop()?;
                self.push(call(callable, args, None, false))?;
            }
            // NEWOBJ
            0x81 => {
                let args = self.pop()?;
                let class = self.pop()?;
                self.push(call(class, args, None, true))?;
            }
            // NEWOBJ_EX
            0x92 => {
                let kwargs = self.pop()?;
                let args = self.pop()?;
                let class = self.pop()?;
                self.push(call(class, args, Some(kwargs), true))?;
            }
            b'b' => {
                let new_state = self.pop()?;
                let target = self.top()?;
                match &mut self.arena.nodes[target] {
                    Node::Call { state, .. } => *state = Some(new_state),
                    _ => return Err(self.malformed("BUILD on something that is not an object")),
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The memo's opcodes: store the top of the stack, or push what was stored. Returns whether `opcode` is one of them.
    fn memo(&mut self, opcode: u8) -> Result<bool, PickleError> {
        match opcode {
            // MEMOIZE
            0x94 => {
                let key = u32::try_from(self.memo.len())
                    .map_err(|_| PickleError::TooMany(self.limits.max_nodes))?;
                self.memo_put(key)?;
            }
            b'q' => {
                let key = self.uint(1)? as u32;
                self.memo_put(key)?;
            }
            b'r' => {
                let key = self.uint(4)? as u32;
                self.memo_put(key)?;
            }
            b'p' => {
                let line = self.line()?;
                let key = line
                    .parse()
                    .map_err(|_| self.malformed(format!("PUT '{line}'")))?;
                self.memo_put(key)?;
            }
            b'h' => {
                let key = self.uint(1)?;
                self.memo_get(key)?;
            }
            b'j' => {
                let key = self.uint(4)?;
                self.memo_get(key)?;
            }
            b'g' => {
                let line = self.line()?;
                let key = line
                    .parse()
                    .map_err(|_| self.malformed(format!("GET '{line}'")))?;
                self.memo_get(key)?;
            }

            _ => return Ok(false),
        }
        Ok(true)
    }
}

fn call(callable: NodeId, args: NodeId, kwargs: Option<NodeId>, new: bool) -> Node {
    Node::Call {
        callable,
        args,
        kwargs,
        new,
        state: None,
        items: Vec::new(),
        appended: Vec::new(),
    }
}

fn long(bytes: &[u8]) -> Node {
    if bytes.is_empty() {
        return Node::Int(0);
    }
    if bytes.len() > 8 {
        return Node::BigInt(bytes.to_vec());
    }
    let negative = bytes[bytes.len() - 1] & 0x80 != 0;
    let mut array = [if negative { 0xff } else { 0 }; 8];
    array[..bytes.len()].copy_from_slice(bytes);
    Node::Int(i64::from_le_bytes(array))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(data: &[u8]) -> Result<Value, PickleError> {
        parse(data, Limits::default())
    }

    #[test]
    fn reads_scalars_containers_and_shared_references() {
        // pickle.dumps({'a': [1, -2, 3.5, None, True], 'b': (b'xy', 'é'), 'big': 2**70}, 5)
        // with the list referenced twice, written by hand with the opcodes Python uses.
        let mut data = vec![0x80, 5, b'}', 0x94, b'('];
        data.extend([0x8c, 1, b'a', 0x94, b']', 0x94, b'(']);
        data.extend([b'K', 1, b'J', 0xfe, 0xff, 0xff, 0xff, b'G']);
        data.extend(3.5f64.to_be_bytes());
        data.extend([b'N', 0x88, b'e']);
        data.extend([
            0x8c, 1, b'b', b'C', 2, b'x', b'y', 0x8c, 2, 0xc3, 0xa9, 0x86,
        ]);
        data.extend([
            0x8c, 3, b'b', b'i', b'g', 0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0x40,
        ]);
        data.extend([0x8c, 1, b'c', b'h', 2, b'u', b'.']);
        let value = read(&data).unwrap();
        let list = Value::List(vec![
            Value::Int(1),
            Value::Int(-2),
            Value::Float(3.5),
            Value::None,
            Value::Bool(true),
        ]);
        assert_eq!(value.get("a"), Some(&list));
        assert_eq!(value.get("c"), Some(&list), "BINGET shares the filled list");
        assert_eq!(
            value.get("b"),
            Some(&Value::Tuple(vec![
                Value::Bytes(b"xy".to_vec()),
                Value::Str("é".into())
            ]))
        );
        assert!(matches!(value.get("big"), Some(Value::BigInt(b)) if b.len() == 9));
    }

    #[test]
    fn records_calls_instead_of_making_them() {
        // os.system('echo hi'): the classic hostile pickle is only a name and its arguments.
        let data = b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x07echo hi\x85R.";
        let value = read(data).unwrap();
        let call = value.call().unwrap();
        assert_eq!(call.class(), Some(("os", "system")));
        assert_eq!(call.args, Value::Tuple(vec![Value::Str("echo hi".into())]));
        assert!(!call.new);
    }

    #[test]
    fn refuses_what_it_cannot_read_with_a_reason() {
        assert_eq!(read(b"\x80\x05K"), Err(PickleError::Truncated(3)));
        assert!(matches!(
            read(b"\x80\x05P1\n."),
            Err(PickleError::Opcode { opcode: b'P', .. })
        ));
        assert_eq!(read(b"\x80\x09N."), Err(PickleError::Protocol(9)));
        assert!(matches!(
            read(b"\x80\x05a."),
            Err(PickleError::Malformed { .. })
        ));
        assert!(matches!(
            read(b"\x80\x05h\x07."),
            Err(PickleError::Malformed { .. })
        ));
        // A length that runs past the end is refused before anything is allocated.
        assert!(matches!(
            read(b"\x80\x05\x8d\xff\xff\xff\xff\xff\xff\xff\x7f"),
            Err(PickleError::Truncated(_))
        ));
        let limits = Limits {
            max_bytes: 4,
            ..Limits::default()
        };
        assert_eq!(
            parse(b"\x80\x05N..", limits),
            Err(PickleError::TooLarge { len: 5, limit: 4 })
        );
    }

    #[test]
    fn deep_or_self_doubling_pickles_are_refused() {
        // 100 nested lists.
        let mut deep = vec![0x80, 5];
        deep.extend(std::iter::repeat_n(b']', 100));
        deep.extend(std::iter::repeat_n(b'a', 99));
        deep.push(b'.');
        assert_eq!(read(&deep), Err(PickleError::TooDeep(64)));
        // Each list holds the previous one twice: 2^40 values once expanded.
        let mut doubling = vec![0x80, 5, b'N', 0x94];
        for i in 0..40u8 {
            doubling.extend([b'(', b'h', i, b'h', i, b'l', 0x94]);
        }
        doubling.push(b'.');
        assert!(matches!(
            read(&doubling),
            Err(PickleError::TooMany(_) | PickleError::TooDeep(_))
        ));
    }
}
