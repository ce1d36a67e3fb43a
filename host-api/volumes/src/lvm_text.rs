//! A small bounded parser for the LVM2 text metadata format:
//!
//! ```text
//! vgname { id = "..." seqno = 3 status = ["READ", "WRITE"] physical_volumes { pv0 { ... } } }
//! ```
//!
//! Hand-written because no maintained crate parses it and the grammar is tiny: sections,
//! `key = value` with integers, strings and flat lists, and `#` comments. Depth and the number of
//! nodes are capped so crafted metadata cannot exhaust the stack or memory.

use guestkit_block::{Error, Result};

/// Deepest section nesting accepted (real metadata uses 5).
const MAX_DEPTH: usize = 32;
/// Most values and sections in one document.
const MAX_NODES: usize = 1_000_000;

/// A value on the right of `=`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Int(i64),
    Str(String),
    List(Vec<Value>),
}

/// What a key names: a value or a nested section.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Value(Value),
    Section(Section),
}

/// A `{ ... }` block (or the whole document), entries in file order.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Section {
    pub entries: Vec<(String, Node)>,
}

impl Section {
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, n)| n)
    }
    pub fn section(&self, key: &str) -> Option<&Section> {
        match self.get(key) {
            Some(Node::Section(s)) => Some(s),
            _ => None,
        }
    }
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.get(key) {
            Some(Node::Value(Value::Int(i))) => Some(*i),
            _ => None,
        }
    }
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Node::Value(Value::Str(s))) => Some(s),
            _ => None,
        }
    }
    pub fn list(&self, key: &str) -> Option<&[Value]> {
        match self.get(key) {
            Some(Node::Value(Value::List(l))) => Some(l),
            _ => None,
        }
    }
    /// The nested sections, in order.
    pub fn sections(&self) -> impl Iterator<Item = (&str, &Section)> {
        self.entries.iter().filter_map(|(k, n)| match n {
            Node::Section(s) => Some((k.as_str(), s)),
            Node::Value(_) => None,
        })
    }
}

fn err(pos: usize, detail: impl std::fmt::Display) -> Error {
    Error::corrupt("LVM text metadata", format!("at byte {pos}: {detail}"))
}

/// Parses a whole metadata document.
pub(crate) fn parse(text: &[u8]) -> Result<Section> {
    let mut p = Parser {
        s: text,
        pos: 0,
        nodes: 0,
    };
    let doc = p.section_body(0)?;
    p.skip_ws();
    if p.pos < p.s.len() {
        return Err(err(p.pos, "unexpected '}'"));
    }
    Ok(doc)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    nodes: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if c == b'#' {
                while let Some(c) = self.peek() {
                    if c == b'\n' {
                        break;
                    }
                    self.pos += 1;
                }
            } else if c.is_ascii_whitespace() || c == 0 {
                // Metadata areas are NUL-padded after the text.
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn count_node(&mut self) -> Result<()> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(Error::Limit(format!(
                "LVM metadata has more than {MAX_NODES} entries"
            )));
        }
        Ok(())
    }

    /// Entries until `}` (not consumed) or the end of input (only at depth 0).
    fn section_body(&mut self, depth: usize) -> Result<Section> {
        let mut sec = Section::default();
        loop {
            self.skip_ws();
            match self.peek() {
                None if depth == 0 => return Ok(sec),
                None => return Err(err(self.pos, "unterminated section")),
                // The caller checks the brace: at depth 0 a stray one is an error there.
                Some(b'}') => return Ok(sec),
                _ => {}
            }
            let key = self.ident()?;
            self.count_node()?;
            self.skip_ws();
            match self.peek() {
                Some(b'=') => {
                    self.pos += 1;
                    let v = self.value()?;
                    sec.entries.push((key, Node::Value(v)));
                }
                Some(b'{') => {
                    if depth + 1 > MAX_DEPTH {
                        return Err(Error::Limit(format!(
                            "LVM metadata nests deeper than {MAX_DEPTH}"
                        )));
                    }
                    self.pos += 1;
                    let inner = self.section_body(depth + 1)?;
                    self.skip_ws();
                    if self.peek() != Some(b'}') {
                        return Err(err(self.pos, "expected '}'"));
                    }
                    self.pos += 1;
                    sec.entries.push((key, Node::Section(inner)));
                }
                _ => return Err(err(self.pos, format!("expected '=' or '{{' after {key:?}"))),
            }
        }
    }

    fn ident(&mut self) -> Result<String> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-' | b'+') {
                self.pos += 1;
            } else {
                break;
            }
        }
        if start == self.pos {
            return Err(err(start, "expected a name"));
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    fn value(&mut self) -> Result<Value> {
        self.skip_ws();
        match self.peek() {
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    match self.peek() {
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(Value::List(items));
                        }
                        Some(b',') if !items.is_empty() => self.pos += 1,
                        None => return Err(err(self.pos, "unterminated list")),
                        _ => {
                            self.count_node()?;
                            // Lists are flat in LVM metadata; nested ones are refused.
                            let v = self.scalar()?;
                            items.push(v);
                        }
                    }
                }
            }
            _ => self.scalar(),
        }
    }

    fn scalar(&mut self) -> Result<Value> {
        self.skip_ws();
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                let mut out = Vec::new();
                loop {
                    match self.peek() {
                        None => return Err(err(self.pos, "unterminated string")),
                        Some(b'"') => {
                            self.pos += 1;
                            break;
                        }
                        Some(b'\\') => {
                            self.pos += 1;
                            match self.peek() {
                                Some(c) => out.push(c),
                                None => return Err(err(self.pos, "unterminated string")),
                            }
                            self.pos += 1;
                        }
                        Some(c) => {
                            out.push(c);
                            self.pos += 1;
                        }
                    }
                }
                Ok(Value::Str(String::from_utf8_lossy(&out).into_owned()))
            }
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                let start = self.pos;
                self.pos += 1;
                while let Some(c) = self.peek() {
                    if c.is_ascii_digit() || c == b'.' {
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
                let text = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
                match text.parse::<i64>() {
                    Ok(i) => Ok(Value::Int(i)),
                    // Floats exist in the grammar but no field we read uses them.
                    Err(_) if text.contains('.') => Ok(Value::Str(text)),
                    Err(e) => Err(err(start, format!("bad number {text:?}: {e}"))),
                }
            }
            _ => Err(err(self.pos, "expected a value")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sections_values_lists_and_comments() {
        let doc = parse(
            b"# comment\nvg {\nid = \"a\\\"b\"\nseqno = 7 # trailing\nstatus = [\"READ\", \"WRITE\"]\n\
              empty = []\nsub { n = -3 f = 1.5 }\n}\ncontents = \"Text Format Volume\"\n\0\0\0",
        )
        .unwrap();
        let vg = doc.section("vg").unwrap();
        assert_eq!(vg.str("id"), Some("a\"b"));
        assert_eq!(vg.int("seqno"), Some(7));
        assert_eq!(vg.list("status").unwrap().len(), 2);
        assert_eq!(vg.list("empty").unwrap().len(), 0);
        assert_eq!(vg.section("sub").unwrap().int("n"), Some(-3));
        assert_eq!(doc.str("contents"), Some("Text Format Volume"));
    }

    #[test]
    fn rejects_malformed_and_bounds_depth() {
        for bad in [
            &b"vg { id = "[..],
            b"vg { id = \"x }",
            b"vg { a = [1, 2 }",
            b"vg = = 3",
            b"a = [,]",
            b"}",
            b"vg { n = 99999999999999999999 }",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = "a{".repeat(100_000) + &"}".repeat(100_000);
        assert!(matches!(parse(deep.as_bytes()), Err(Error::Limit(_))));
    }
}
