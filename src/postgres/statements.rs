//! SQL text cut the way PostgreSQL's lexer cuts it, just far enough to split
//! a script into statements and read their keywords: a `;` inside a string
//! (`'...'`, `E'...'`, `$tag$...$tag$`), a quoted identifier or a comment
//! ends nothing. Nothing here understands SQL beyond that; what is sent to
//! PostgreSQL is always the original text.

/// What a token is, as far as splitting and keyword matching care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A keyword or unquoted identifier (`GRANT`, `public`).
    Word,
    /// A `"quoted identifier"`.
    Quoted,
    /// A string constant of any quoting.
    Literal,
    /// `-- ...` or `/* ... */` (nested, as PostgreSQL allows).
    Comment,
    /// Anything else: one punctuation character, an operator character, a
    /// number, a `$1` parameter.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    pub kind: Kind,
    pub text: &'a str,
    /// Byte offset of `text` in the script.
    pub start: usize,
}

impl Token<'_> {
    /// Whether this is the unquoted keyword `word` (ASCII case-insensitive).
    pub fn is(&self, word: &str) -> bool {
        self.kind == Kind::Word && self.text.eq_ignore_ascii_case(word)
    }

    /// The name an identifier token stands for: unquoted ones fold to lower
    /// case, quoted ones lose their quotes. `None` for other tokens.
    pub fn name(&self) -> Option<String> {
        match self.kind {
            Kind::Word => Some(self.text.to_ascii_lowercase()),
            Kind::Quoted => Some(
                self.text
                    .strip_prefix('"')
                    .unwrap_or(self.text)
                    .strip_suffix('"')
                    .unwrap_or(self.text)
                    .replace("\"\"", "\""),
            ),
            _ => None,
        }
    }
}

/// One statement of a script: its text without the terminating `;`, and
/// its tokens, comments included.
#[derive(Debug, Clone)]
pub struct Statement<'a> {
    pub text: &'a str,
    pub tokens: Vec<Token<'a>>,
}

impl<'a> Statement<'a> {
    /// The tokens that are not comments.
    pub fn code(&self) -> impl Iterator<Item = &Token<'a>> {
        self.tokens.iter().filter(|t| t.kind != Kind::Comment)
    }

    /// The text, safe to follow with `;`: a trailing `--` comment would
    /// swallow it, so the text then ends with a newline.
    pub fn sql(&self) -> String {
        match self.tokens.last() {
            Some(t) if t.kind == Kind::Comment && t.text.starts_with("--") => {
                format!("{}\n", self.text)
            }
            _ => self.text.to_string(),
        }
    }
}

fn ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn ident_char(b: u8) -> bool {
    ident_start(b) || b.is_ascii_digit() || b == b'$'
}

/// The end of the string constant whose opening quote is at `at`;
/// `backslash`: backslash escapes the next byte (`E'...'`).
fn end_of_literal(bytes: &[u8], at: usize, backslash: bool) -> usize {
    let mut i = at + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if backslash => i += 2,
            b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The dollar-quote delimiter (`$$`, `$tag$`) starting at `at`, if one does.
fn dollar_tag(bytes: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    if bytes.get(i).is_some_and(|&b| ident_start(b)) {
        while bytes.get(i).is_some_and(|&b| ident_char(b) && b != b'$') {
            i += 1;
        }
    }
    (bytes.get(i) == Some(&b'$')).then_some(i + 1)
}

/// The tokens of `sql`, whitespace dropped. Unterminated strings, quoted
/// identifiers and comments run to the end (PostgreSQL refuses them).
pub fn tokens(sql: &str) -> Vec<Token<'_>> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let kind = match b {
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                Kind::Comment
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let mut depth = 0usize;
                while i < bytes.len() {
                    if bytes[i..].starts_with(b"/*") {
                        depth += 1;
                        i += 2;
                    } else if bytes[i..].starts_with(b"*/") {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                Kind::Comment
            }
            b'\'' => {
                i = end_of_literal(bytes, i, false);
                Kind::Literal
            }
            b'e' | b'E' if bytes.get(i + 1) == Some(&b'\'') => {
                i = end_of_literal(bytes, i + 1, true);
                Kind::Literal
            }
            b'"' => {
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == b'"' {
                        if bytes.get(i + 1) == Some(&b'"') {
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    i += 1;
                }
                Kind::Quoted
            }
            b'$' => match dollar_tag(bytes, i) {
                Some(after) => {
                    let tag = &sql[i..after];
                    i = sql[after..]
                        .find(tag)
                        .map_or(bytes.len(), |end| after + end + tag.len());
                    Kind::Literal
                }
                None => {
                    i += 1;
                    while i < bytes.len() && bytes[i].is_ascii_digit() {
                        i += 1;
                    }
                    Kind::Other
                }
            },
            _ if ident_start(b) => {
                while i < bytes.len() && ident_char(bytes[i]) {
                    i += 1;
                }
                Kind::Word
            }
            _ if b.is_ascii_digit() => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                    i += 1;
                }
                Kind::Other
            }
            _ => {
                i += 1;
                Kind::Other
            }
        };
        out.push(Token {
            kind,
            text: &sql[start..i],
            start,
        });
    }
    out
}

/// The statements of a script, split at the `;` that end them. Statements
/// that are empty or only comments are left out.
pub fn split(sql: &str) -> Vec<Statement<'_>> {
    fn finish<'a>(sql: &'a str, tokens: Vec<Token<'a>>, out: &mut Vec<Statement<'a>>) {
        if tokens.iter().all(|t| t.kind == Kind::Comment) {
            return;
        }
        let (first, last) = (tokens[0], tokens[tokens.len() - 1]);
        out.push(Statement {
            text: &sql[first.start..last.start + last.text.len()],
            tokens,
        });
    }
    let mut out = Vec::new();
    let mut current = Vec::new();
    for token in tokens(sql) {
        if token.kind == Kind::Other && token.text == ";" {
            finish(sql, std::mem::take(&mut current), &mut out);
        } else {
            current.push(token);
        }
    }
    finish(sql, current, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sql: &str) -> Vec<&str> {
        split(sql).iter().map(|s| s.text).collect()
    }

    #[test]
    fn semicolons_in_strings_identifiers_and_comments_end_nothing() {
        assert_eq!(
            texts(r#"CREATE ROLE "a;b" PASSWORD 'x;''y'; GRANT SELECT ON t TO "a;b";"#),
            [
                r#"CREATE ROLE "a;b" PASSWORD 'x;''y'"#,
                r#"GRANT SELECT ON t TO "a;b""#
            ]
        );
        assert_eq!(
            texts("SELECT E'a\\';b'; SELECT 2"),
            ["SELECT E'a\\';b'", "SELECT 2"]
        );
        assert_eq!(
            texts("DO $f$ BEGIN PERFORM 1; END $f$; DO $$ x; $$;SELECT $1"),
            [
                "DO $f$ BEGIN PERFORM 1; END $f$",
                "DO $$ x; $$",
                "SELECT $1"
            ]
        );
        assert_eq!(
            texts("SELECT 1 /* a; /* nested; */ still; */ + 1 -- c;\n; ;  -- only;"),
            ["SELECT 1 /* a; /* nested; */ still; */ + 1 -- c;"]
        );
    }

    #[test]
    fn a_trailing_line_comment_keeps_its_statement_terminable() {
        let s = &split("SELECT 1 -- why")[0];
        assert_eq!(s.sql(), "SELECT 1 -- why\n");
        assert_eq!(split("SELECT 1")[0].sql(), "SELECT 1");
    }

    #[test]
    fn dollars_inside_identifiers_are_not_quotes() {
        let t = tokens("SELECT a$b$ FROM x$; SELECT 1");
        assert_eq!(t[1].text, "a$b$");
        assert_eq!(texts("SELECT a$b$ FROM x$; SELECT 1").len(), 2);
    }

    #[test]
    fn names_fold_like_postgresql() {
        let t = tokens(r#"Public "My ""Schema""" 'lit'"#);
        assert_eq!(t[0].name().as_deref(), Some("public"));
        assert_eq!(t[1].name().as_deref(), Some(r#"My "Schema""#));
        assert_eq!(t[2].name(), None);
        assert!(t[0].is("PUBLIC"));
    }

    #[test]
    fn unterminated_quotes_run_to_the_end() {
        assert_eq!(texts("SELECT 'a; b"), ["SELECT 'a; b"]);
        assert_eq!(texts("SELECT $x$ a; b"), ["SELECT $x$ a; b"]);
        assert!(split("").is_empty());
    }
}
