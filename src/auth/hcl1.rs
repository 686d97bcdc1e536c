//! HCL 1, the syntax of Vault policy documents, read into a plain tree.
//!
//! Vault and OpenBao parse policies with HashiCorp's first HCL library, not
//! with HCL 2 (which `hcl-rs` implements), and the two differ where policy
//! authors notice: HCL 1 ignores line breaks entirely, so two blocks may
//! share a line, a block may close on its attribute's line and object
//! entries need no commas; a key may repeat; keys may be quoted. No crate
//! implements HCL 1, so this module does, for what a policy can hold:
//! comments (`#`, `//`, `/* */`), identifiers, strings, numbers, booleans,
//! heredocs, lists, objects and nested `key "label" { ... }` items. Its
//! error messages keep HCL 1's `At line:column:` form.
//!
//! The tree keeps every item in order, repeated keys included; deciding
//! what a repeat means is the policy decoder's business.

use std::fmt;

/// One `key ... = value` or `key "label" ... { ... }` item.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The keys before `=` or `{`: one for an assignment, one or more for
    /// an object (`path "secret/*" { ... }` has the keys `path`, `secret/*`).
    pub keys: Vec<String>,
    pub value: Node,
    /// The line of the first key, 1-based, for error messages.
    pub line: usize,
}

/// A value.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    String(String),
    /// The number as written (`3`, `-1.5`, `1e3`).
    Number(String),
    Bool(bool),
    List(Vec<Node>),
    Object(Vec<Item>),
}

/// Where and why a document is not HCL 1.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "At {}:{}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for SyntaxError {}

/// Parses a whole document: the items of its top-level object.
pub fn parse(text: &str) -> Result<Vec<Item>, SyntaxError> {
    let tokens = scan(text)?;
    let mut parser = Parser { tokens, at: 0 };
    let items = parser.object_list(false)?;
    // `object_list(false)` stops only at the end of the input.
    Ok(items)
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Ident(String),
    String(String),
    Number(String),
    Heredoc(String),
    LBrace,
    RBrace,
    LBrack,
    RBrack,
    Comma,
    Assign,
    Eof,
}

impl Kind {
    /// HCL 1's token names, as its messages print them.
    fn name(&self) -> &'static str {
        match self {
            Kind::Ident(s) if s == "true" || s == "false" => "BOOL",
            Kind::Ident(_) => "IDENT",
            Kind::String(_) => "STRING",
            Kind::Number(n) if n.contains(['.', 'e', 'E']) => "FLOAT",
            Kind::Number(_) => "NUMBER",
            Kind::Heredoc(_) => "HEREDOC",
            Kind::LBrace => "LBRACE",
            Kind::RBrace => "RBRACE",
            Kind::LBrack => "LBRACK",
            Kind::RBrack => "RBRACK",
            Kind::Comma => "COMMA",
            Kind::Assign => "ASSIGN",
            Kind::Eof => "EOF",
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    line: usize,
    column: usize,
}

/// A cursor over the characters with line and column counting.
struct Chars<'a> {
    rest: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
    column: usize,
}

impl Chars<'_> {
    fn peek(&mut self) -> Option<char> {
        self.rest.peek().copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.rest.next()?;
        if c == '\n' {
            self.line += 1;
            self.column = 0;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn error(&self, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            line: self.line,
            column: self.column,
            message: message.into(),
        }
    }
}

fn scan(text: &str) -> Result<Vec<Token>, SyntaxError> {
    let mut chars = Chars {
        rest: text.chars().peekable(),
        line: 1,
        column: 0,
    };
    let mut tokens = Vec::new();
    loop {
        // Whitespace, line breaks included, separates tokens and means
        // nothing else in HCL 1.
        while chars.peek().is_some_and(char::is_whitespace) {
            chars.bump();
        }
        let (line, column) = (chars.line, chars.column + 1);
        let Some(c) = chars.bump() else {
            tokens.push(Token {
                kind: Kind::Eof,
                line,
                column,
            });
            return Ok(tokens);
        };
        let kind = match c {
            '#' => {
                skip_line(&mut chars);
                continue;
            }
            '/' => match chars.bump() {
                Some('/') => {
                    skip_line(&mut chars);
                    continue;
                }
                Some('*') => {
                    skip_block_comment(&mut chars)?;
                    continue;
                }
                _ => return Err(chars.error("expected '/' for comment")),
            },
            '{' => Kind::LBrace,
            '}' => Kind::RBrace,
            '[' => Kind::LBrack,
            ']' => Kind::RBrack,
            ',' => Kind::Comma,
            '=' => Kind::Assign,
            '"' => Kind::String(string(&mut chars)?),
            '<' if chars.peek() == Some('<') => {
                chars.bump();
                Kind::Heredoc(heredoc(&mut chars)?)
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.peek().is_some_and(|d| d.is_ascii_digit())) =>
            {
                Kind::Number(number(c, &mut chars))
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut ident = String::from(c);
                while let Some(n) = chars.peek() {
                    if n.is_alphanumeric() || n == '_' || n == '-' || n == '.' {
                        ident.push(n);
                        chars.bump();
                    } else {
                        break;
                    }
                }
                Kind::Ident(ident)
            }
            _ => return Err(chars.error("illegal char")),
        };
        tokens.push(Token { kind, line, column });
    }
}

fn skip_line(chars: &mut Chars) {
    while chars.peek().is_some_and(|c| c != '\n') {
        chars.bump();
    }
}

fn skip_block_comment(chars: &mut Chars) -> Result<(), SyntaxError> {
    let mut star = false;
    loop {
        match chars.bump() {
            None => return Err(chars.error("comment not terminated")),
            Some('/') if star => return Ok(()),
            Some(c) => star = c == '*',
        }
    }
}

fn number(first: char, chars: &mut Chars) -> String {
    let mut text = String::from(first);
    let mut last = first;
    while let Some(c) = chars.peek() {
        let exponent_sign = (c == '-' || c == '+') && (last == 'e' || last == 'E');
        if c.is_ascii_alphanumeric() || c == '.' || exponent_sign {
            text.push(c);
            last = c;
            chars.bump();
        } else {
            break;
        }
    }
    text
}

/// A double-quoted string after its opening quote. `${...}` is kept as
/// text (policies do no interpolation), but a quote inside it does not end
/// the string, as in HCL 1.
fn string(chars: &mut Chars) -> Result<String, SyntaxError> {
    let mut out = String::new();
    let mut braces = 0usize;
    loop {
        let Some(c) = chars.bump() else {
            return Err(chars.error("literal not terminated"));
        };
        match c {
            '\n' => return Err(chars.error("literal not terminated")),
            '"' if braces == 0 => return Ok(out),
            '\\' if braces == 0 => out.push(escape(chars)?),
            '$' if chars.peek() == Some('{') => {
                chars.bump();
                braces += 1;
                out.push_str("${");
            }
            '{' if braces > 0 => {
                braces += 1;
                out.push(c);
            }
            '}' if braces > 0 => {
                braces -= 1;
                out.push(c);
            }
            c => out.push(c),
        }
    }
}

fn escape(chars: &mut Chars) -> Result<char, SyntaxError> {
    let hex = |chars: &mut Chars, digits: usize| -> Result<char, SyntaxError> {
        let mut value = 0u32;
        for _ in 0..digits {
            let d = chars
                .bump()
                .and_then(|c| c.to_digit(16))
                .ok_or_else(|| chars.error("invalid escape sequence"))?;
            value = value * 16 + d;
        }
        char::from_u32(value).ok_or_else(|| chars.error("invalid escape sequence"))
    };
    Ok(match chars.bump() {
        Some('n') => '\n',
        Some('t') => '\t',
        Some('r') => '\r',
        Some('a') => '\u{7}',
        Some('b') => '\u{8}',
        Some('f') => '\u{c}',
        Some('v') => '\u{b}',
        Some('\\') => '\\',
        Some('"') => '"',
        Some('x') => hex(chars, 2)?,
        Some('u') => hex(chars, 4)?,
        Some('U') => hex(chars, 8)?,
        _ => return Err(chars.error("invalid escape sequence")),
    })
}

/// `<<EOF` or `<<-EOF` after the `<<`: the lines up to the one holding only
/// the anchor (indented, with `-`, whose content lines lose the common
/// indentation), each line ending in a line break.
fn heredoc(chars: &mut Chars) -> Result<String, SyntaxError> {
    let indented = chars.peek() == Some('-');
    if indented {
        chars.bump();
    }
    let mut anchor = String::new();
    while let Some(c) = chars.peek() {
        if c == '\n' || c == '\r' {
            break;
        }
        anchor.push(c);
        chars.bump();
    }
    if anchor.is_empty() || !anchor.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return Err(chars.error("zero-length heredoc anchor"));
    }
    if chars.peek() == Some('\r') {
        chars.bump();
    }
    chars.bump();
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let mut ended = false;
        while let Some(c) = chars.bump() {
            if c == '\n' {
                ended = true;
                break;
            }
            line.push(c);
        }
        let line = line.strip_suffix('\r').map(str::to_string).unwrap_or(line);
        let closes = if indented {
            line.trim_start() == anchor
        } else {
            line == anchor
        };
        if closes {
            break;
        }
        if !ended {
            return Err(chars.error("heredoc not terminated"));
        }
        lines.push(line);
    }
    if indented {
        let indent = lines
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.len() - l.trim_start().len())
            .min()
            .unwrap_or(0);
        for line in &mut lines {
            *line = line.chars().skip(indent).collect();
        }
    }
    Ok(lines.into_iter().map(|l| l + "\n").collect())
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.at]
    }

    fn next(&mut self) -> Token {
        let token = self.tokens[self.at].clone();
        if self.at + 1 < self.tokens.len() {
            self.at += 1;
        }
        token
    }

    fn error(token: &Token, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            line: token.line,
            column: token.column,
            message: message.into(),
        }
    }

    /// Items up to `}` (inside an object) or the end of the input; a comma
    /// after an item is optional.
    fn object_list(&mut self, in_object: bool) -> Result<Vec<Item>, SyntaxError> {
        let mut items = Vec::new();
        loop {
            match self.peek().kind {
                Kind::RBrace if in_object => break,
                Kind::Eof => break,
                _ => {}
            }
            items.push(self.object_item()?);
            if self.peek().kind == Kind::Comma {
                self.next();
            }
        }
        Ok(items)
    }

    fn object_item(&mut self) -> Result<Item, SyntaxError> {
        let first = self.peek().clone();
        let mut keys = Vec::new();
        loop {
            let token = self.next();
            match token.kind.clone() {
                Kind::Ident(name) => keys.push(name),
                Kind::String(name) => keys.push(name),
                Kind::Assign => {
                    if keys.len() > 1 {
                        return Err(Self::error(
                            &token,
                            "nested object expected: LBRACE got: ASSIGN",
                        ));
                    }
                    if keys.is_empty() {
                        return Err(Self::error(&token, "no object keys found!"));
                    }
                    let value = self.value()?;
                    return Ok(Item {
                        keys,
                        value,
                        line: first.line,
                    });
                }
                Kind::LBrace => {
                    if keys.is_empty() {
                        return Err(Self::error(&token, "expected: IDENT | STRING got: LBRACE"));
                    }
                    let value = self.object_body(&token)?;
                    return Ok(Item {
                        keys,
                        value,
                        line: first.line,
                    });
                }
                Kind::Eof if !keys.is_empty() => {
                    let shown = keys
                        .iter()
                        .enumerate()
                        .map(|(i, k)| {
                            if i == 0 {
                                k.clone()
                            } else {
                                format!("\"{k}\"")
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(" ");
                    return Err(Self::error(
                        &token,
                        format!(
                            "key '{shown}' expected start of object ('{{') or assignment ('=')"
                        ),
                    ));
                }
                other => {
                    return Err(Self::error(
                        &token,
                        format!(
                            "expected: IDENT | STRING | ASSIGN | LBRACE got: {}",
                            other.name()
                        ),
                    ));
                }
            }
        }
    }

    /// The items of an object whose `{` was just read, and its `}`.
    fn object_body(&mut self, open: &Token) -> Result<Node, SyntaxError> {
        let items = self.object_list(true)?;
        let close = self.next();
        if close.kind != Kind::RBrace {
            let at = if close.kind == Kind::Eof {
                &close
            } else {
                open
            };
            return Err(Self::error(
                at,
                format!("object expected closing RBRACE got: {}", close.kind.name()),
            ));
        }
        Ok(Node::Object(items))
    }

    /// The value after `=`.
    fn value(&mut self) -> Result<Node, SyntaxError> {
        let token = self.next();
        match token.kind.clone() {
            Kind::LBrace => self.object_body(&token),
            Kind::LBrack => self.list(),
            kind => Self::literal(kind).ok_or_else(|| {
                Self::error(&token, format!("Unknown token: {}", token.kind.name()))
            }),
        }
    }

    fn literal(kind: Kind) -> Option<Node> {
        Some(match kind {
            Kind::String(s) | Kind::Heredoc(s) => Node::String(s),
            Kind::Number(n) => Node::Number(n),
            Kind::Ident(b) if b == "true" => Node::Bool(true),
            Kind::Ident(b) if b == "false" => Node::Bool(false),
            _ => return None,
        })
    }

    /// A list whose `[` was just read: values separated by commas, a
    /// trailing (or doubled) comma allowed, as HCL 1 allows.
    fn list(&mut self) -> Result<Node, SyntaxError> {
        let mut items = Vec::new();
        let mut need_comma = false;
        loop {
            let token = self.next();
            if need_comma && !matches!(token.kind, Kind::Comma | Kind::RBrack) {
                return Err(Self::error(
                    &token,
                    format!(
                        "error parsing list, expected comma or list end, got: {}",
                        token.kind.name()
                    ),
                ));
            }
            match token.kind.clone() {
                Kind::RBrack => return Ok(Node::List(items)),
                Kind::Comma => need_comma = false,
                Kind::LBrace => {
                    items.push(self.object_body(&token)?);
                    need_comma = true;
                }
                Kind::LBrack => {
                    items.push(self.list()?);
                    need_comma = true;
                }
                kind => {
                    let node = Self::literal(kind).ok_or_else(|| {
                        Self::error(
                            &token,
                            format!("unexpected token while parsing list: {}", token.kind.name()),
                        )
                    })?;
                    items.push(node);
                    need_comma = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(keys: &[&str], value: Node) -> Item {
        Item {
            keys: keys.iter().map(|k| k.to_string()).collect(),
            value,
            line: 1,
        }
    }

    fn s(v: &str) -> Node {
        Node::String(v.into())
    }

    #[test]
    fn line_breaks_mean_nothing() {
        let one_line =
            parse(r#"path "a" { capabilities = ["read"] } path "b" { x = { "k" = [] "j" = [] } }"#)
                .unwrap();
        assert_eq!(
            one_line,
            vec![
                item(
                    &["path", "a"],
                    Node::Object(vec![item(&["capabilities"], Node::List(vec![s("read")]))])
                ),
                item(
                    &["path", "b"],
                    Node::Object(vec![item(
                        &["x"],
                        Node::Object(vec![
                            item(&["k"], Node::List(vec![])),
                            item(&["j"], Node::List(vec![]))
                        ])
                    )])
                ),
            ]
        );
        let spread = parse("path\n\"a\"\n{\ncapabilities\n=\n[\n\"read\"\n]\n}\n").unwrap();
        assert_eq!(spread[0].keys, ["path", "a"]);
        assert_eq!(spread[0].line, 1);
    }

    #[test]
    fn literals_comments_and_commas() {
        let items = parse(
            "# c\n// c\n/* c\n */ a = 1, b = -2.5e3\nc = true\nd = \"x\\\"\\u0041${f(\"q\")}\"\ne = [,1,,\"z\",]\n",
        )
        .unwrap();
        let values: Vec<&Node> = items.iter().map(|i| &i.value).collect();
        assert_eq!(
            values,
            [
                &Node::Number("1".into()),
                &Node::Number("-2.5e3".into()),
                &Node::Bool(true),
                &s("x\"A${f(\"q\")}"),
                &Node::List(vec![Node::Number("1".into()), s("z")]),
            ]
        );
        assert_eq!(items[2].line, 5);
    }

    #[test]
    fn heredocs() {
        let items = parse("a = <<EOT\none\n  two\nEOT\nb = <<-X\n    x\n      y\n    X\n").unwrap();
        assert_eq!(items[0].value, s("one\n  two\n"));
        assert_eq!(items[1].value, s("x\n  y\n"));
    }

    #[test]
    fn errors_say_where_as_hcl1_does() {
        let e = |t: &str| parse(t).unwrap_err().to_string();
        assert_eq!(
            e("a = [\"x\" \"y\"]"),
            "At 1:10: error parsing list, expected comma or list end, got: STRING"
        );
        assert_eq!(
            e("a = [x]"),
            "At 1:6: unexpected token while parsing list: IDENT"
        );
        assert_eq!(
            e("p \"a\" = 1"),
            "At 1:7: nested object expected: LBRACE got: ASSIGN"
        );
        assert_eq!(
            e("a { b = 1 } }"),
            "At 1:13: expected: IDENT | STRING | ASSIGN | LBRACE got: RBRACE"
        );
        assert_eq!(
            e("a { b = 1"),
            "At 1:10: object expected closing RBRACE got: EOF"
        );
        assert_eq!(e("a { b: 1 }"), "At 1:6: illegal char");
        assert_eq!(e("a { b = 1 };"), "At 1:12: illegal char");
        assert!(e("p \"b\"").contains("key 'p \"b\"' expected start of object"));
        assert!(e("a = \"x\ny\"").contains("literal not terminated"));
        assert!(e("/* x").contains("comment not terminated"));
        assert!(e("7 = 1").contains("got: NUMBER"));
    }
}
