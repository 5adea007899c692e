//! A one-pass reader for embeddings responses of the usual shape.
//!
//! A 64 x 1024 response holds 65,536 numbers; serde spends about two hundred instructions
//! on each. This reader walks the body once and reads the common spelling of a value
//! (`-0.0123456789`: at most 15 digits, no exponent) eight digits at a time.
//!
//! It accepts a strict subset of what the serde decoder accepts: an object with `data`,
//! `model`, `usage` and `object`; items with `index`, `embedding` and `object`; strings
//! without escapes; well-formed numbers. For anything else (another key, an escaped
//! string, a duplicate, malformed JSON, vectors of different lengths) it returns `None`
//! and the caller decodes the body with serde, which gives the same result or a precise
//! error. Values are computed exactly as serde_json computes them (see [`Cursor::value`]).

use crate::wire::Usage;

/// What a body of the usual shape holds, in arrival order.
pub(super) struct Scanned {
    pub(super) values: Vec<f32>,
    pub(super) dim: Option<usize>,
    pub(super) order: Vec<usize>,
    pub(super) model: String,
    pub(super) usage: Option<Usage>,
}

/// Reads `body`, or returns `None` for the serde decoder to handle it; `expected` (the
/// number of inputs) only sizes the buffer.
pub(crate) fn scan_embeddings(body: &[u8], expected: usize) -> Option<Scanned> {
    let mut c = Cursor { b: body, i: 0 };
    let mut out = Scanned {
        values: Vec::new(),
        dim: None,
        order: Vec::new(),
        model: String::new(),
        usage: None,
    };
    let mut seen_data = false;
    c.open(b'{')?;
    if !c.close(b'}') {
        loop {
            match c.string()? {
                "data" if !seen_data => {
                    seen_data = true;
                    c.colon()?;
                    c.data(&mut out, expected)?;
                }
                "model" => {
                    c.colon()?;
                    out.model = if c.null() {
                        String::new()
                    } else {
                        c.string()?.to_owned()
                    };
                }
                "usage" => {
                    c.colon()?;
                    out.usage = if c.null() { None } else { Some(c.usage()?) };
                }
                "object" => {
                    c.colon()?;
                    c.string()?;
                }
                _ => return None,
            }
            if !c.next_member(b'}')? {
                break;
            }
        }
    }
    c.skip_ws();
    (seen_data && c.i == body.len()).then_some(out)
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.b.get(self.i).copied()
    }

    /// Consumes `open` (`{` or `[`).
    fn open(&mut self, open: u8) -> Option<()> {
        (self.peek()? == open).then(|| self.i += 1)
    }

    /// Consumes `close` if it comes next: an empty object or array.
    fn close(&mut self, close: u8) -> bool {
        let found = self.peek() == Some(close);
        self.i += usize::from(found);
        found
    }

    fn colon(&mut self) -> Option<()> {
        (self.peek()? == b':').then(|| self.i += 1)
    }

    /// After a member or element: `true` on `,`, `false` on `close`.
    fn next_member(&mut self, close: u8) -> Option<bool> {
        let c = self.peek()?;
        self.i += 1;
        match c {
            b',' => Some(true),
            c if c == close => Some(false),
            _ => None,
        }
    }

    fn null(&mut self) -> bool {
        let found = self.peek() == Some(b'n') && self.b.get(self.i..self.i + 4) == Some(b"null");
        self.i += if found { 4 } else { 0 };
        found
    }

    /// A string without escapes or control characters.
    fn string(&mut self) -> Option<&'a str> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.i + 1;
        let len = self
            .b
            .get(start..)?
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        let end = start + len;
        if self.b[end] != b'"' {
            return None;
        }
        self.i = end + 1;
        std::str::from_utf8(&self.b[start..end]).ok()
    }

    /// A non-negative integer that fits `u64`, spelt as JSON allows.
    fn uint(&mut self) -> Option<u64> {
        self.skip_ws();
        let start = self.i;
        let (mantissa, digits) = self.digits();
        let end = self.i;
        let valid = digits > 0
            && digits < 20
            && !(digits > 1 && self.b[start] == b'0')
            && !matches!(self.b.get(end), Some(b'.' | b'e' | b'E'));
        valid.then_some(mantissa)
    }

    fn usage(&mut self) -> Option<Usage> {
        let mut usage = Usage::default();
        let mut seen = [false; 3];
        self.open(b'{')?;
        if !self.close(b'}') {
            loop {
                let key = self.string()?;
                self.colon()?;
                let value = self.uint()?;
                let slot = match key {
                    "prompt_tokens" => Some((0, &mut usage.prompt_tokens)),
                    "completion_tokens" => Some((1, &mut usage.completion_tokens)),
                    "total_tokens" => Some((2, &mut usage.total_tokens)),
                    _ => None,
                };
                if let Some((k, field)) = slot {
                    // serde refuses a duplicate field.
                    if std::mem::replace(&mut seen[k], true) {
                        return None;
                    }
                    *field = value;
                }
                if !self.next_member(b'}')? {
                    break;
                }
            }
        }
        Some(usage)
    }

    fn data(&mut self, out: &mut Scanned, expected: usize) -> Option<()> {
        self.open(b'[')?;
        if self.close(b']') {
            return Some(());
        }
        loop {
            self.item(out, expected)?;
            if !self.next_member(b']')? {
                return Some(());
            }
        }
    }

    fn item(&mut self, out: &mut Scanned, expected: usize) -> Option<()> {
        let mut index = None;
        let mut row = None;
        self.open(b'{')?;
        if !self.close(b'}') {
            loop {
                match self.string()? {
                    "index" if index.is_none() => {
                        self.colon()?;
                        index = Some(usize::try_from(self.uint()?).ok()?);
                    }
                    "embedding" if row.is_none() => {
                        self.colon()?;
                        let start = out.values.len();
                        self.vector(&mut out.values)?;
                        row = Some(out.values.len() - start);
                    }
                    "object" => {
                        self.colon()?;
                        self.string()?;
                    }
                    _ => return None,
                }
                if !self.next_member(b'}')? {
                    break;
                }
            }
        }
        let (index, len) = (index?, row?);
        match out.dim {
            None => {
                out.dim = Some(len);
                out.values.reserve(expected.saturating_sub(1) * len);
            }
            // serde reports mixed dimensions with a precise error.
            Some(dim) if dim != len => return None,
            Some(_) => {}
        }
        out.order.push(index);
        Some(())
    }

    fn vector(&mut self, values: &mut Vec<f32>) -> Option<()> {
        self.open(b'[')?;
        if self.close(b']') {
            return Some(());
        }
        loop {
            self.skip_ws();
            values.push(self.value()?);
            if !self.next_member(b']')? {
                return Some(());
            }
        }
    }

    /// One number as `f32`, exactly as serde_json deserializes it: a decimal of at most
    /// 15 digits without exponent is its digits as an integer (exact in `f64`) divided by
    /// an exact power of ten, so the `f64` is correctly rounded, then narrowed to `f32`
    /// (serde_json's fast path, followed by serde's `f64 as f32`). Other spellings are
    /// handed to serde_json itself.
    fn value(&mut self) -> Option<f32> {
        const POW10: [f64; 16] = [
            1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
        ];
        let start = self.i;
        let negative = self.b.get(self.i) == Some(&b'-');
        self.i += usize::from(negative);
        let int_start = self.i;
        let (mut mantissa, int_digits) = self.digits();
        if int_digits == 0 || (int_digits > 1 && self.b[int_start] == b'0') {
            return None;
        }
        let mut frac_digits = 0;
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            let (frac, n) = self.digits_after(mantissa);
            if n == 0 {
                return None;
            }
            (mantissa, frac_digits) = (frac, n);
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) || int_digits + frac_digits > 15 {
            // Rare spellings: let serde_json read the token, exponent and all.
            self.i = start;
            while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.b.get(self.i) {
                self.i += 1;
            }
            let token = std::str::from_utf8(&self.b[start..self.i]).ok()?;
            return serde_json::from_str::<f32>(token).ok();
        }
        let magnitude = mantissa as f64 / POW10[frac_digits];
        Some((if negative { -magnitude } else { magnitude }) as f32)
    }

    /// Decimal digits from here, accumulated (wrapping) into an integer, and their count.
    fn digits(&mut self) -> (u64, usize) {
        self.digits_after(0)
    }

    fn digits_after(&mut self, mut value: u64) -> (u64, usize) {
        let start = self.i;
        while let Some(chunk) = self.b.get(self.i..self.i + 8) {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            if !all_digits(word) {
                break;
            }
            value = value
                .wrapping_mul(100_000_000)
                .wrapping_add(eight_digits(word));
            self.i += 8;
        }
        while let Some(&d @ b'0'..=b'9') = self.b.get(self.i) {
            value = value.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
            self.i += 1;
        }
        (value, self.i - start)
    }
}

/// Whether all eight bytes of `word` are ASCII digits.
fn all_digits(word: u64) -> bool {
    const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    word & HIGH == ZEROS && word.wrapping_add(0x0606_0606_0606_0606) & HIGH == ZEROS
}

/// The value of eight ASCII digits read little-endian (the first digit in the low byte),
/// by pairing neighbours three times.
fn eight_digits(word: u64) -> u64 {
    let w = (word & 0x0F0F_0F0F_0F0F_0F0F).wrapping_mul(2561) >> 8;
    let w = (w & 0x00FF_00FF_00FF_00FF).wrapping_mul(6_553_601) >> 16;
    (w & 0x0000_FFFF_0000_FFFF).wrapping_mul(42_949_672_960_001) >> 32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eight_digits_at_a_time() {
        for s in ["00000000", "12345678", "99999999", "02961797", "10000001"] {
            let word = u64::from_le_bytes(s.as_bytes().try_into().unwrap());
            assert!(all_digits(word), "{s}");
            assert_eq!(eight_digits(word), s.parse::<u64>().unwrap(), "{s}");
        }
        for s in ["1234567.", "/2345678", ":2345678", "1234567 ", "-1234567"] {
            let word = u64::from_le_bytes(s.as_bytes().try_into().unwrap());
            assert!(!all_digits(word), "{s}");
        }
    }
}
