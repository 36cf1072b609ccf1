//! The Prometheus text format, written by hand for the per-Pod families: family headers,
//! samples with their labels escaped, and numbers.
//!
//! This runs for every series on every scrape (how many:
//! docs/benchmarks.md#what-does-metrics-cost-and-can-clients-hold-it-up): pieces are
//! appended in order, without `format!`, and label pairs shared by several samples (a Pod's,
//! a policy's) are escaped once into a [`LabelSet`].

/// A metric family: what its `# HELP` and `# TYPE` lines say.
pub(super) struct Family {
    pub(crate) name: &'static str,
    /// A constant: it is written as is, so it holds no backslash and no newline.
    pub(crate) help: &'static str,
    /// `gauge` or `counter`.
    pub(crate) kind: &'static str,
}

/// Text in the Prometheus format, built family by family and sample by sample.
#[derive(Default)]
pub(super) struct SampleWriter {
    text: String,
    /// The length of the last text handed over: what the next is sized for.
    last: usize,
}

impl SampleWriter {
    /// Starts `family`: its `# HELP` and `# TYPE` lines. Its samples must follow, all together.
    pub(crate) fn header(&mut self, family: &Family) {
        for (line, tail) in [("# HELP ", family.help), ("# TYPE ", family.kind)] {
            self.text.push_str(line);
            self.text.push_str(family.name);
            self.text.push(' ');
            self.text.push_str(tail);
            self.text.push('\n');
        }
    }

    /// Starts a sample of `family`: add its labels, then finish it with [`Sample::value`].
    pub(crate) fn sample(&mut self, family: &str) -> Sample<'_> {
        self.text.push_str(family);
        self.text.push('{');
        Sample { out: &mut self.text, first: true }
    }

    /// Whether nothing was written since the last [`SampleWriter::take`].
    pub(crate) fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Hands over the text written so far. The next text is given room when it starts
    /// ([`SampleWriter::reserve`]), not now: a render waiting for its client holds nothing.
    pub(crate) fn take(&mut self) -> String {
        self.last = self.text.len();
        std::mem::take(&mut self.text)
    }

    /// Makes room for as much as the last text and a quarter more (the per-segment chunks
    /// are about the same size: the next rarely grows).
    pub(crate) fn reserve(&mut self) {
        self.text.reserve(self.last + self.last / 4);
    }
}

/// One sample being written: its labels in order, then its value.
#[must_use = "a sample is complete once its value is written"]
pub(super) struct Sample<'w> {
    out: &'w mut String,
    first: bool,
}

impl Sample<'_> {
    /// Adds `name="value"`, the value escaped.
    pub(crate) fn label(mut self, name: &str, value: &str) -> Self {
        self.separate();
        push_pair(self.out, name, value);
        self
    }

    /// Adds the pairs of `set`.
    pub(crate) fn labels(mut self, set: &LabelSet) -> Self {
        if !set.text.is_empty() {
            self.separate();
            self.out.push_str(&set.text);
        }
        self
    }

    /// Writes the value and ends the sample.
    pub(crate) fn value(self, value: impl itoa::Integer) {
        self.out.push_str("} ");
        self.out.push_str(itoa::Buffer::new().format(value));
        self.out.push('\n');
    }

    /// Writes `thousandths` / 1000 as an exact decimal (`300` is `0.3`, `2000` is `2`) and
    /// ends the sample: a CPU amount in cores from millicores, without a float's rounding.
    pub(crate) fn value_thousandths(self, thousandths: u64) {
        self.out.push_str("} ");
        self.out.push_str(itoa::Buffer::new().format(thousandths / 1000));
        let mut fraction = thousandths % 1000;
        if fraction != 0 {
            self.out.push('.');
            while fraction != 0 {
                let digit = u8::try_from(fraction / 100).unwrap_or(0);
                self.out.push(char::from(b'0' + digit));
                fraction = fraction % 100 * 10;
            }
        }
        self.out.push('\n');
    }

    fn separate(&mut self) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
    }
}

/// Label pairs escaped once and spliced into many samples with [`Sample::labels`]; reused
/// from Pod to Pod, so that its buffer is allocated once per render.
#[derive(Default)]
pub(super) struct LabelSet {
    text: String,
}

impl LabelSet {
    /// Replaces the pairs with `pairs`, in order.
    pub(crate) fn set(&mut self, pairs: &[(&str, &str)]) {
        self.set_from(pairs.iter().copied());
    }

    /// Replaces the pairs with those `pairs` yields, in order.
    pub(crate) fn set_from<'a>(&mut self, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) {
        self.text.clear();
        for (i, (name, value)) in pairs.into_iter().enumerate() {
            if i > 0 {
                self.text.push(',');
            }
            push_pair(&mut self.text, name, value);
        }
    }
}

fn push_pair(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str("=\"");
    push_escaped(out, value);
    out.push('"');
}

/// Appends a label value escaped as the text format wants: backslash, double quote and
/// newline.
fn push_escaped(out: &mut String, value: &str) {
    // Label values rarely need escaping: copy them whole unless they do. `fold` rather
    // than `any`: without the early exit, the check is vectorized.
    if !value.bytes().fold(false, |found, b| found | matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_samples_numbers_and_escapes() {
        let mut w = SampleWriter::default();
        w.header(&Family { name: "x_total", help: "Things \"counted\"", kind: "counter" });
        let mut pod = LabelSet::default();
        pod.set(&[("namespace", "a\\b"), ("pod", "p\n\"q\"")]);
        w.sample("x_total").label("kind", "plain").labels(&pod).value(4_294_967_295u32);
        w.sample("x_total").labels(&LabelSet::default()).label("kind", "").value(0u32);
        assert_eq!(
            w.take(),
            "# HELP x_total Things \"counted\"\n# TYPE x_total counter\n\
             x_total{kind=\"plain\",namespace=\"a\\\\b\",pod=\"p\\n\\\"q\\\"\"} 4294967295\n\
             x_total{kind=\"\"} 0\n"
        );
        assert!(w.is_empty());
    }

    #[test]
    fn thousandths_are_exact_decimals() {
        let mut w = SampleWriter::default();
        for value in [0, 1, 10, 300, 1_000, 1_500, 2_050, 123_456, u64::MAX] {
            w.sample("cpu").value_thousandths(value);
        }
        assert_eq!(
            w.take(),
            "cpu{} 0\ncpu{} 0.001\ncpu{} 0.01\ncpu{} 0.3\ncpu{} 1\ncpu{} 1.5\ncpu{} 2.05\ncpu{} 123.456\n\
             cpu{} 18446744073709551.615\n"
        );
    }
}
