//! Bencode, as the ng control protocol uses it: integers, byte strings, lists and
//! dictionaries. Dictionaries keep their keys in arrival order (ng peers do not
//! sort them) and are written in insertion order. Parsing is bounded (depth,
//! lengths) and never panics.

use std::fmt;

/// A bencoded value.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    /// `i42e`
    Int(i64),
    /// `4:spam`
    Bytes(Vec<u8>),
    /// `l...e`
    List(Vec<Value>),
    /// `d...e`
    Dict(Vec<(Vec<u8>, Value)>),
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Bytes(b) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            Value::List(l) => f.debug_list().entries(l).finish(),
            Value::Dict(d) => f
                .debug_map()
                .entries(d.iter().map(|(k, v)| (String::from_utf8_lossy(k), v)))
                .finish(),
        }
    }
}

/// Why a message is not valid bencode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed bencode: {}", self.0)
    }
}

const MAX_DEPTH: usize = 32;

impl Value {
    /// A string value.
    pub fn str(s: &str) -> Self {
        Value::Bytes(s.as_bytes().to_vec())
    }

    /// An empty dictionary.
    pub fn dict() -> Self {
        Value::Dict(Vec::new())
    }

    /// Appends (or replaces) a key of a dictionary; no effect on other values.
    pub fn set(&mut self, key: &str, v: Value) -> &mut Self {
        if let Value::Dict(d) = self {
            match d.iter_mut().find(|(k, _)| k == key.as_bytes()) {
                Some((_, old)) => *old = v,
                None => d.push((key.as_bytes().to_vec(), v)),
            }
        }
        self
    }

    /// The value of a key of a dictionary.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(d) => d.iter().find(|(k, _)| k == key.as_bytes()).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string value of a key (UTF-8).
    pub fn get_str(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The value as a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The value as an integer.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The strings of a list value (a lone string counts as a list of one, as ng
    /// peers send either).
    pub fn str_list(&self) -> Vec<&str> {
        match self {
            Value::List(l) => l.iter().filter_map(Value::as_str).collect(),
            Value::Bytes(_) => self.as_str().into_iter().collect(),
            _ => Vec::new(),
        }
    }

    /// Serialises into `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Value::Bytes(b) => {
                out.extend_from_slice(b.len().to_string().as_bytes());
                out.push(b':');
                out.extend_from_slice(b);
            }
            Value::List(l) => {
                out.push(b'l');
                for v in l {
                    v.encode_into(out);
                }
                out.push(b'e');
            }
            Value::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    Value::Bytes(k.clone()).encode_into(out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Serialises.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode_into(&mut v);
        v
    }

    /// Parses exactly one value filling `buf`.
    pub fn decode(buf: &[u8]) -> Result<Value, DecodeError> {
        let (v, rest) = parse(buf, 0)?;
        if !rest.is_empty() {
            return Err(DecodeError(format!("{} trailing bytes", rest.len())));
        }
        Ok(v)
    }
}

/// Finds where one bencoded value ends in a stream that may so far hold only
/// its beginning (ng over TCP). It resumes where the last call stopped, so the
/// bytes of a message are looked at about once however it arrives; it tells a
/// value that is not complete yet (`Ok(None)`) from bytes that can never be one
/// (an error). Only the framing is checked here: [`Value::decode`] checks the
/// complete value.
#[derive(Debug, Clone)]
pub struct Framer {
    /// Start of the next token.
    pos: usize,
    /// Lists and dictionaries open.
    depth: usize,
    /// Largest value accepted.
    limit: usize,
}

/// Longest integer token (`i-9223372036854775808e`).
const MAX_INT_TOKEN: usize = 22;
/// Longest string length prefix with its colon.
const MAX_LEN_PREFIX: usize = 12;

impl Framer {
    /// A framer of values up to `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Framer {
            pos: 0,
            depth: 0,
            limit,
        }
    }

    /// The length of the value at the start of `buf` once it is complete.
    /// `buf` must hold the same bytes at each call (more may follow).
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, DecodeError> {
        loop {
            let Some(&b) = buf.get(self.pos) else {
                return Ok(None);
            };
            let next = match b {
                b'i' => {
                    let tok = &buf[self.pos..buf.len().min(self.pos + MAX_INT_TOKEN)];
                    let Some(end) = tok.iter().position(|&c| c == b'e') else {
                        if tok.len() == MAX_INT_TOKEN {
                            return err("integer too long");
                        }
                        if !tok[1..].iter().all(|&c| c == b'-' || c.is_ascii_digit()) {
                            return err("bad integer");
                        }
                        return Ok(None);
                    };
                    if end == 1 || !tok[1..end].iter().all(|&c| c == b'-' || c.is_ascii_digit()) {
                        return err("bad integer");
                    }
                    self.pos + end + 1
                }
                b'0'..=b'9' => {
                    let tok = &buf[self.pos..buf.len().min(self.pos + MAX_LEN_PREFIX)];
                    let Some(colon) = tok.iter().position(|&c| c == b':') else {
                        if tok.len() == MAX_LEN_PREFIX || !tok.iter().all(u8::is_ascii_digit) {
                            return err("bad string length");
                        }
                        return Ok(None);
                    };
                    let n: usize = std::str::from_utf8(&tok[..colon])
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or(DecodeError("bad string length".into()))?;
                    let end = (self.pos + colon + 1).saturating_add(n);
                    if end > self.limit {
                        return err("message too long");
                    }
                    if end > buf.len() {
                        return Ok(None);
                    }
                    end
                }
                b'l' | b'd' => {
                    self.depth += 1;
                    if self.depth > MAX_DEPTH {
                        return err("nested too deeply");
                    }
                    self.pos + 1
                }
                b'e' if self.depth > 0 => {
                    self.depth -= 1;
                    self.pos + 1
                }
                c => return Err(DecodeError(format!("unexpected byte 0x{c:02x}"))),
            };
            if next > self.limit {
                return err("message too long");
            }
            self.pos = next;
            if self.depth == 0 {
                return Ok(Some(self.pos));
            }
        }
    }
}

fn err<T>(s: &str) -> Result<T, DecodeError> {
    Err(DecodeError(s.to_string()))
}

fn parse(buf: &[u8], depth: usize) -> Result<(Value, &[u8]), DecodeError> {
    if depth > MAX_DEPTH {
        return err("nested too deeply");
    }
    match buf.first() {
        None => err("unexpected end"),
        Some(b'i') => {
            let end = buf
                .iter()
                .position(|&c| c == b'e')
                .ok_or(DecodeError("unterminated integer".into()))?;
            let s =
                std::str::from_utf8(&buf[1..end]).map_err(|_| DecodeError("bad integer".into()))?;
            if s.is_empty()
                || s.starts_with('+')
                || (s.len() > 1 && (s.starts_with('0') || s.starts_with("-0")))
            {
                return err("bad integer");
            }
            let i = s
                .parse::<i64>()
                .map_err(|_| DecodeError("bad integer".into()))?;
            Ok((Value::Int(i), &buf[end + 1..]))
        }
        Some(b'l') => {
            let mut rest = &buf[1..];
            let mut items = Vec::new();
            loop {
                match rest.first() {
                    Some(b'e') => return Ok((Value::List(items), &rest[1..])),
                    None => return err("unterminated list"),
                    _ => {
                        let (v, r) = parse(rest, depth + 1)?;
                        items.push(v);
                        rest = r;
                    }
                }
            }
        }
        Some(b'd') => {
            let mut rest = &buf[1..];
            let mut items = Vec::new();
            loop {
                match rest.first() {
                    Some(b'e') => return Ok((Value::Dict(items), &rest[1..])),
                    None => return err("unterminated dictionary"),
                    _ => {
                        let (k, r) = parse(rest, depth + 1)?;
                        let Value::Bytes(k) = k else {
                            return err("dictionary key is not a string");
                        };
                        let (v, r) = parse(r, depth + 1)?;
                        items.push((k, v));
                        rest = r;
                    }
                }
            }
        }
        Some(b'0'..=b'9') => {
            let colon = buf
                .iter()
                .take(12)
                .position(|&c| c == b':')
                .ok_or(DecodeError("bad string length".into()))?;
            let n: usize = std::str::from_utf8(&buf[..colon])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(DecodeError("bad string length".into()))?;
            let body = buf
                .get(colon + 1..colon + 1 + n)
                .ok_or(DecodeError("string longer than the message".into()))?;
            Ok((Value::Bytes(body.to_vec()), &buf[colon + 1 + n..]))
        }
        Some(c) => Err(DecodeError(format!("unexpected byte 0x{c:02x}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_keeps_key_order() {
        let m = b"d7:command5:offer7:call-id3:abc5:flagsl5:trusti-3ee3:sdp5:v=0\r\ne";
        let v = Value::decode(m).unwrap();
        assert_eq!(v.get_str("command"), Some("offer"));
        assert_eq!(v.get_str("sdp"), Some("v=0\r\n"));
        assert_eq!(
            v.get("flags").unwrap(),
            &Value::List(vec![Value::str("trust"), Value::Int(-3)])
        );
        assert_eq!(v.encode(), m.to_vec());
        let mut d = Value::dict();
        d.set("result", Value::str("ok")).set("n", Value::Int(0));
        assert_eq!(d.encode(), b"d6:result2:ok1:ni0ee".to_vec());
    }

    /// Fed byte by byte or whole, the framer finds the same end; bad bytes are
    /// errors at once, never a wait for more.
    #[test]
    fn the_framer_tells_incomplete_from_invalid() {
        let m = b"d7:command5:offer5:flagsl5:trusti-3ee3:sdp5:v=0\r\ne";
        let mut f = Framer::new(1 << 20);
        for n in 0..m.len() {
            assert_eq!(f.scan(&m[..n]), Ok(None), "{n}");
        }
        assert_eq!(f.scan(m), Ok(Some(m.len())));
        let mut two = m.to_vec();
        two.extend_from_slice(b"d1:ai1ee");
        assert_eq!(Framer::new(1 << 20).scan(&two), Ok(Some(m.len())));
        for bad in [
            &b"x"[..],
            b"e",
            b"d7:commandx",
            b"di1x",
            b"d1:ai12345678901234567890123e",
            b"d1234567890123:",
            b"d3-:",
            b"ie",
        ] {
            assert!(
                Framer::new(1 << 20).scan(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(Framer::new(100).scan(b"d999:").is_err(), "past the limit");
        let deep = "l".repeat(100);
        assert!(Framer::new(1 << 20).scan(deep.as_bytes()).is_err());
    }

    #[test]
    fn rejects_malformed_input_without_panicking() {
        for bad in [
            &b""[..],
            b"i",
            b"i12",
            b"ie",
            b"i01e",
            b"i-0e",
            b"5:abc",
            b"99999999999999999999:x",
            b"l",
            b"d3:abc",
            b"di1ei2ee",
            b"x",
            b"i1ei2e",
        ] {
            assert!(
                Value::decode(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = "l".repeat(100) + &"e".repeat(100);
        assert!(Value::decode(deep.as_bytes()).is_err());
        // Seeded garbage: errors, never panics.
        let mut x: u64 = 0x1234_5678;
        for _ in 0..20_000 {
            let len = (x % 40) as usize;
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    b"ild0123456789:e-x"[(x % 17) as usize]
                })
                .collect();
            // The TCP framer agrees: a complete value is framed whole.
            let framed = Framer::new(1 << 20).scan(&buf);
            if Value::decode(&buf).is_ok() {
                assert_eq!(framed, Ok(Some(buf.len())), "{buf:?}");
            }
        }
    }
}
