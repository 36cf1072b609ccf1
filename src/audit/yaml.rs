//! YAML read a piece at a time. `kubectl get pods -A -o yaml` prints one document, a `List`
//! whose `items` hold every Pod; the YAML parser loads a whole document's events before
//! decoding it (many times the input: docs/benchmarks.md#figures-the-codes-comments-cite).
//! So the input is read line by line,
//! split into documents at their markers (`---`, `...`), and the entries of a top-level
//! block-style `items:` sequence are cut out and parsed one by one, each re-indented as a
//! document of its own. That is exact for what kubectl, helm and kustomize print; anchors
//! shared between entries (which none of them emit) are not resolved across entries.

use std::io::BufRead;
use std::sync::LazyLock;

use regex::{Captures, Regex};

/// A piece of the input to parse on its own.
pub(super) enum Piece<'t> {
    /// A document; where its `items` entries were cut out, it keeps `items: []`, so that its
    /// envelope (`kind: List`, `metadata`) still reads as a List, not as an object to audit.
    Document(Text<'t>),
    /// One entry of a top-level `items:` sequence, its dash blanked out.
    Item(Text<'t>),
}

/// A piece's text and where it is in the input.
pub(super) struct Text<'t> {
    /// The text.
    pub(crate) text: &'t str,
    /// The input's line it begins at (1-based).
    pub(crate) line: usize,
    /// Where it first nests flow collections deeper than [`MAX_DEPTH`]: the input's line and
    /// the column (1-based), found while splitting, before any parser reads it.
    pub(crate) too_deep: Option<(usize, usize)>,
}

/// A piece being gathered.
#[derive(Default)]
struct Gathered {
    text: String,
    line: usize,
    too_deep: Option<(usize, usize)>,
}

impl Gathered {
    /// Adds a line; `too_deep` is where it passes [`MAX_DEPTH`], if it does.
    fn push(&mut self, line: &str, too_deep: Option<(usize, usize)>) {
        self.text.push_str(line);
        self.too_deep = self.too_deep.or(too_deep);
    }

    /// Begins an entry with its first line, the dash replaced by a space so that the entry's
    /// content keeps its columns and parses as a document of its own.
    fn start_item(&mut self, line: &str, number: usize, dash: usize, too_deep: Option<(usize, usize)>) {
        self.text.push_str(&line[..dash]);
        self.text.push(' ');
        self.text.push_str(&line[dash + 1..]);
        self.line = number;
        self.too_deep = too_deep;
    }

    fn piece(&self) -> Text<'_> {
        Text { text: &self.text, line: self.line, too_deep: self.too_deep }
    }

    fn clear(&mut self) {
        self.text.clear();
        self.too_deep = None;
    }
}

/// Where the splitter is within a document.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Outside any `items:` block.
    Document,
    /// Right after a top-level `items:` line, before its first entry.
    ItemsStart,
    /// Within the entries of `items:`, whose dashes sit at this column.
    Items(usize),
}

/// Reads `reader` to its end, handing each piece to `each` in input order (an entry before the
/// rest of its document). `first_line` is the line number of the reader's first line.
pub(super) fn split<E>(
    reader: &mut dyn BufRead,
    first_line: usize,
    read_error: &dyn Fn(std::io::Error) -> E,
    each: &mut dyn FnMut(Piece) -> Result<(), E>,
) -> Result<(), E> {
    let mut line = String::new();
    let mut number = first_line - 1;
    let mut document = Gathered { line: first_line, ..Gathered::default() };
    let mut mapping = None::<bool>;
    let mut item = Gathered::default();
    let mut state = State::Document;
    let mut scan = FlowScan::default();
    loop {
        line.clear();
        let end = reader.read_line(&mut line).map_err(read_error)? == 0;
        number += 1;
        // The YAML parser skips a byte-order mark that starts a line outside a scalar and
        // counts it as one column (libyaml's `yaml_parser_scan_to_next_token`): a blank in
        // its place means the same to the parser and keeps this splitter's columns in bytes.
        // Kept, the mark made an indented line look like column 0 and end the `items` entry
        // (the fuzz target audit_input, crash-b5acffd1).
        if !scan.inside() && line.starts_with('\u{FEFF}') {
            line.replace_range(..'\u{FEFF}'.len_utf8(), " ");
        }
        let marker = end || is_marker(&line, "---") || is_marker(&line, "...");
        // A line that begins inside a quoted scalar or a flow collection goes on with it:
        // an `items:` or a dash at its start is text (the fuzz target audit_input cut a List
        // out of a quoted string, and audited a Pod the YAML did not hold).
        let continued = !marker && scan.inside();
        if marker {
            scan = FlowScan::default();
        }
        let too_deep = scan.line(&line).map(|column| (number, column));
        if let State::Items(dash) = state {
            let indent = indent(&line);
            let blank = line.trim().is_empty() || line.trim_start().starts_with('#');
            if !marker && (continued || indent > dash || blank) {
                item.push(&line, too_deep);
                continue;
            }
            if !item.text.is_empty() {
                each(Piece::Item(item.piece()))?;
                item.clear();
            }
            if !marker && is_entry(&line, dash) {
                item.start_item(&line, number, dash, too_deep);
                continue;
            }
            state = State::Document;
        }
        if state == State::ItemsStart && !marker && !line.trim().is_empty() && !line.trim_start().starts_with('#') {
            let dash = indent(&line);
            if is_entry(&line, dash) {
                state = State::Items(dash);
                document.push("items: []\n", None);
                item.start_item(&line, number, dash, too_deep);
                continue;
            }
            document.push("items:\n", None);
            state = State::Document;
        }
        if marker {
            if state == State::ItemsStart {
                document.push("items:\n", None);
            }
            // `---` starts the next document; `...` ends this one.
            let ends_here = !end && line.starts_with("...");
            if ends_here {
                document.push(&line, too_deep);
            }
            if !document.text.is_empty() {
                each(Piece::Document(document.piece()))?;
            }
            document.clear();
            state = State::Document;
            // Content on the marker's line (`--- {…}`) is not a block mapping.
            let rest = line.get(3..).unwrap_or_default().trim();
            mapping = (line.starts_with("---") && !rest.is_empty() && !rest.starts_with('#')).then_some(false);
            document.line = number;
            if end {
                return Ok(());
            }
            if ends_here {
                document.line += 1;
            } else {
                document.push(&line, too_deep);
            }
            continue;
        }
        if mapping.is_none() && !line.trim().is_empty() && !line.starts_with(['#', '%']) {
            // Only a block mapping at column 0 has top-level keys to recognise by their text.
            mapping = Some(!line.starts_with([' ', '-', '[', '{', '"', '\'', '!', '&', '*', '?', '|', '>']));
        }
        if mapping == Some(true) && state == State::Document && !continued && is_items_key(&line) {
            state = State::ItemsStart;
            continue;
        }
        document.push(&line, too_deep);
    }
}

/// Whether `line` is the document marker `marker` (`---` or `...`), alone or followed by
/// content after a space, at column 0.
fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker).is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
}

/// Whether `line` is the top-level key `items:` with no value on its line.
fn is_items_key(line: &str) -> bool {
    line.strip_prefix("items:").is_some_and(|rest| {
        let rest = rest.trim_start_matches([' ', '\t']);
        rest.is_empty() || rest.starts_with(['\r', '\n', '#'])
    })
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// Whether `line` is a sequence entry (`- …` or a lone `-`) whose dash is at column `dash`.
fn is_entry(line: &str, dash: usize) -> bool {
    indent(line) == dash
        && line[dash..].strip_prefix('-').is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\r', '\n']))
}

/// The deepest flow nesting (`[`, `{`) handed to the YAML parser. Its decoder stops at 128
/// levels, but only after the parser has read the whole piece, and the parser takes quadratic
/// time on deep flow nesting (docs/benchmarks.md#figures-the-codes-comments-cite);
/// block nesting costs it little.
pub(super) const MAX_DEPTH: usize = 128;

/// Where `text` first nests flow collections deeper than [`MAX_DEPTH`]: `(line, column)`,
/// 1-based within `text`, as [`split`] finds it.
#[cfg(test)]
fn too_deep(text: &str) -> Option<(usize, usize)> {
    let mut scan = FlowScan::default();
    text.lines().enumerate().find_map(|(number, line)| Some((number + 1, scan.line(line)?)))
}

/// What of the flow context one line leaves to the next: open quoted scalars and flow
/// collections (both may span lines) and the block scalar (`|`, `>`) being read. A scan of
/// the bytes, not a parse: brackets and quotes count where a node may begin (after `- `,
/// `? `, `: `, an anchor or tag, at a line's start) and inside flow collections, never in
/// comments, quoted scalars or block scalars. A miscount can only miss nesting, or see a
/// quote where a plain scalar has one, never invent nesting or end a quote early: valid
/// documents are never refused, and the splitter at worst leaves a List whole.
#[derive(Default)]
struct FlowScan {
    depth: usize,
    quote: Option<u8>,
    /// Lines more indented than this belong to a block scalar.
    block_scalar: Option<usize>,
}

impl FlowScan {
    /// Whether the next line begins inside a quoted scalar or a flow collection, where a
    /// key, an entry's dash or a comment at column 0 is text, not structure.
    fn inside(&self) -> bool {
        self.depth > 0 || self.quote.is_some()
    }

    /// Scans one line (its end of line, if any, is ignored); gives the 1-based column where
    /// flow nesting first passes [`MAX_DEPTH`] on it.
    fn line(&mut self, line: &str) -> Option<usize> {
        let line = line.trim_end_matches(['\n', '\r']);
        let bytes = line.as_bytes();
        let indent = bytes.iter().take_while(|b| **b == b' ').count();
        if let Some(parent) = self.block_scalar {
            if indent > parent || line.trim().is_empty() {
                return None;
            }
            self.block_scalar = None;
        }
        let mut node_start = self.depth == 0 && self.quote.is_none();
        let mut too_deep = None;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            let spaced = |at: usize| bytes.get(at).is_none_or(|c| matches!(c, b' ' | b'\t'));
            if let Some(q) = self.quote {
                match b {
                    b'\\' if q == b'"' => i += 1,
                    b'\'' if q == b'\'' && bytes.get(i + 1) == Some(&b'\'') => i += 1,
                    _ if b == q => self.quote = None,
                    _ => {}
                }
                i += 1;
                continue;
            }
            match b {
                b' ' | b'\t' => {}
                b'#' if i == 0 || matches!(bytes[i - 1], b' ' | b'\t') => break,
                b'"' | b'\'' if node_start || self.depth > 0 => self.quote = Some(b),
                b'[' | b'{' if node_start || self.depth > 0 => {
                    self.depth += 1;
                    if self.depth > MAX_DEPTH && too_deep.is_none() {
                        too_deep = Some(i + 1);
                    }
                }
                b']' | b'}' if self.depth > 0 => self.depth -= 1,
                b'|' | b'>' if node_start && self.depth == 0 => {
                    self.block_scalar = Some(indent);
                    break;
                }
                b'-' | b'?' if node_start && self.depth == 0 && spaced(i + 1) => {}
                b':' if self.depth == 0 && spaced(i + 1) => node_start = true,
                b'&' | b'!' if node_start => {
                    while i < bytes.len() && !matches!(bytes[i], b' ' | b'\t') {
                        i += 1;
                    }
                    continue;
                }
                _ if self.depth == 0 => node_start = false,
                _ => {}
            }
            i += 1;
        }
        too_deep
    }
}

/// `message` (a YAML parser's, about a piece beginning at input line `first`) with its
/// `line N` positions made the input's.
pub(super) fn input_lines(message: &str, first: usize) -> String {
    static LINE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\bline (\d+)").expect("a valid pattern"));
    LINE.replace_all(message, |c: &Captures| match c[1].parse::<usize>() {
        Ok(n) => format!("line {}", n + first - 1),
        Err(_) => c[0].to_string(),
    })
    .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(kind, first line, text)` of every piece.
    fn pieces(input: &str) -> Vec<(&'static str, usize, String)> {
        let mut out = Vec::new();
        split::<std::io::Error>(&mut input.as_bytes(), 1, &|e| e, &mut |piece| {
            out.push(match piece {
                Piece::Document(t) => ("doc", t.line, t.text.to_string()),
                Piece::Item(t) => ("item", t.line, t.text.to_string()),
            });
            Ok(())
        })
        .expect("split");
        out
    }

    #[test]
    fn a_kubectl_list_is_cut_into_its_items() {
        let list = "apiVersion: v1\nitems:\n- apiVersion: v1\n  kind: Pod\n  data: |\n    - not an entry\n\n    # nor a comment\n- kind: Pod\n  # a comment\nkind: List\nmetadata:\n  resourceVersion: \"\"\n";
        assert_eq!(
            pieces(list),
            [
                (
                    "item",
                    3,
                    "  apiVersion: v1\n  kind: Pod\n  data: |\n    - not an entry\n\n    # nor a comment\n".into()
                ),
                ("item", 9, "  kind: Pod\n  # a comment\n".into()),
                ("doc", 1, "apiVersion: v1\nitems: []\nkind: List\nmetadata:\n  resourceVersion: \"\"\n".into()),
            ]
        );
        // Entries indented under the key, and a list that ends the stream.
        assert_eq!(
            pieces("kind: List\nitems:\n  - kind: Pod\n    x: 1\n  -\n    kind: Pod"),
            [
                ("item", 3, "    kind: Pod\n    x: 1\n".into()),
                ("item", 5, "   \n    kind: Pod".into()),
                ("doc", 1, "kind: List\nitems: []\n".into()),
            ]
        );
    }

    #[test]
    fn documents_split_at_their_markers_and_only_block_mappings_are_cut() {
        let stream = "# head\n---\nkind: Service\n...\n---\nitems:\n- kind: Pod\n--- {items: [1]}\n- items:\n  - 1\n";
        assert_eq!(
            pieces(stream),
            [
                ("doc", 1, "# head\n".into()),
                ("doc", 2, "---\nkind: Service\n...\n".into()),
                ("item", 7, "  kind: Pod\n".into()),
                ("doc", 5, "---\nitems: []\n".into()),
                ("doc", 8, "--- {items: [1]}\n- items:\n  - 1\n".into()),
            ]
        );
        // `items:` with a value, or followed by something other than entries, stays whole.
        assert_eq!(pieces("items: []\n"), [("doc", 1, "items: []\n".into())]);
        assert_eq!(pieces("items:\n  a: 1\n"), [("doc", 1, "items:\n  a: 1\n".into())]);
        assert_eq!(pieces("kind: List\nitems:\n"), [("doc", 1, "kind: List\nitems:\n".into())]);
    }

    #[test]
    fn lines_inside_a_quoted_scalar_or_a_flow_collection_are_text() {
        // `items:` and its entries at column 0, inside a multi-line quoted string.
        let quoted = "kind: List\nmetadata:\n  note: 'x\nitems:\n- kind: Pod\nother: y'\n";
        assert_eq!(pieces(quoted), [("doc", 1, quoted.into())]);
        let double = "kind: List\nnote: \"a \\\" b\nitems:\n- kind: Pod\"\n";
        assert_eq!(pieces(double), [("doc", 1, double.into())]);
        // An entry's quoted string going on at the dash's column stays in the entry.
        assert_eq!(
            pieces("items:\n- a: 'x\n- y'\n- b: 1\n"),
            [("item", 2, "  a: 'x\n- y'\n".into()), ("item", 4, "  b: 1\n".into()), ("doc", 1, "items: []\n".into())]
        );
        // A flow collection over several lines.
        let flow = "kind: List\nnote: [1,\nitems: 2]\n";
        assert_eq!(pieces(flow), [("doc", 1, flow.into())]);
        // Apostrophes in plain scalars open nothing.
        assert_eq!(
            pieces("note: it's\nitems:\n- kind: Pod\n"),
            [("item", 3, "  kind: Pod\n".into()), ("doc", 1, "note: it's\nitems: []\n".into())]
        );
    }

    #[test]
    fn deep_flow_nesting_is_found_without_parsing() {
        let deep = |open: &str, close: &str, n: usize| format!("{}{}", open.repeat(n), close.repeat(n));
        assert_eq!(too_deep(&format!("a: {}\n", deep("[", "]", 128))), None);
        assert_eq!(too_deep(&format!("kind: Pod\na: {}\n", deep("[", "]", 129))), Some((2, 132)));
        assert_eq!(too_deep(&format!("- &x !!seq {}", deep("{a: ", "}", 200))), Some((1, 11 + 4 * 128 + 1)));
        assert_eq!(too_deep(&format!("a:\n{}", "  [\n".repeat(129))), Some((130, 3)));
        // Brackets that are text: in plain scalars, quotes, comments and block scalars.
        let text = "a: b[[[[\n".repeat(40)
            + &"c: \"[[[[\\\"[[\n  [[[[\"\nd: '[[''[['\n".repeat(40)
            + &"# [[[[[[\ne: x # [[[[[[\n".repeat(40)
            + "f: |\n  [[[[[[\n\n  [[[[[[\n".repeat(40).as_str()
            + "g: [[[1], \"]]]\"]]\n";
        assert_eq!(too_deep(&text), None);
    }

    #[test]
    fn parser_positions_become_the_inputs() {
        assert_eq!(
            input_lines(
                "did not find expected key at line 2 column 3, while parsing a block mapping at line 1 column 1",
                40
            ),
            "did not find expected key at line 41 column 3, while parsing a block mapping at line 40 column 1"
        );
    }
}
