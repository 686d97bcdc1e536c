//! Usernames of issued users: `v-<role>-<random>` by default, or a role's
//! `username_template`. Every result fits PostgreSQL's 63 bytes and the
//! random part is never cut: the role, cluster and database parts are
//! shortened instead.

use super::names::MAX_IDENTIFIER;
use crate::random;

const RANDOM_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// Length of the random part of the default template.
pub const DEFAULT_RANDOM: usize = 16;

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Role,
    Cluster,
    Database,
    Random(usize),
    UnixTime,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

impl Template {
    pub fn default_template() -> Template {
        Template {
            parts: vec![
                Part::Text("v-".into()),
                Part::Role,
                Part::Text("-".into()),
                Part::Random(DEFAULT_RANDOM),
            ],
        }
    }

    /// Parses and checks a template: known placeholders, a random part of at
    /// least 8 characters (uniqueness), and room for it within 63 bytes.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find("{{") {
                Some(0) => {
                    let end = rest
                        .find("}}")
                        .ok_or("unclosed placeholder: '{{' without '}}'")?;
                    let inner = rest[2..end].trim();
                    let mut words = inner.split_whitespace();
                    let part = match (words.next(), words.next(), words.next()) {
                        (Some("role"), None, _) => Part::Role,
                        (Some("cluster"), None, _) => Part::Cluster,
                        (Some("database"), None, _) => Part::Database,
                        (Some("unix_time"), None, _) => Part::UnixTime,
                        (Some("random"), Some(n), None) => {
                            let n: usize = n.parse().map_err(|_| format!("{{{{random {n}}}}}: the length must be a number"))?;
                            Part::Random(n)
                        }
                        _ => return Err(format!("unknown placeholder {{{{{inner}}}}}: use role, cluster, database, random N or unix_time")),
                    };
                    parts.push(part);
                    rest = &rest[end + 2..];
                }
                found => {
                    let end = found.unwrap_or(rest.len());
                    let text = &rest[..end];
                    if let Some(bad) = text.chars().find(|c| !name_char(*c)) {
                        return Err(format!("character {bad:?} is not allowed: use letters, digits, '_', '-' and '.'"));
                    }
                    parts.push(Part::Text(text.to_string()));
                    rest = &rest[end..];
                }
            }
        }
        let random: usize = parts
            .iter()
            .map(|p| if let Part::Random(n) = p { *n } else { 0 })
            .sum();
        if random < 8 {
            return Err("include {{random N}} with N of at least 8 so usernames are unique".into());
        }
        let fixed: usize = parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.len(),
                Part::Random(n) => *n,
                Part::UnixTime => 10,
                _ => 0,
            })
            .sum();
        if fixed > MAX_IDENTIFIER {
            return Err(format!("the fixed and random parts take {fixed} bytes; usernames hold at most {MAX_IDENTIFIER}"));
        }
        Ok(Template { parts })
    }

    /// A username for `role` on `cluster`/`database`.
    pub fn render(&self, role: &str, cluster: &str, database: &str, now: i64) -> String {
        let fixed: usize = self
            .parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.len(),
                Part::Random(n) => *n,
                Part::UnixTime => now.to_string().len(),
                _ => 0,
            })
            .sum();
        let variable: Vec<&str> = self
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::Role => Some(role),
                Part::Cluster => Some(cluster),
                Part::Database => Some(database),
                _ => None,
            })
            .collect();
        // Share the room left among the variable parts, longest cut first.
        let mut room = MAX_IDENTIFIER.saturating_sub(fixed);
        let mut limits = vec![0usize; variable.len()];
        let mut order: Vec<usize> = (0..variable.len()).collect();
        order.sort_by_key(|&i| variable[i].len());
        let mut left = variable.len();
        for i in order {
            let share = room / left.max(1);
            limits[i] = variable[i].len().min(share);
            room -= limits[i];
            left -= 1;
        }
        let mut out = String::with_capacity(MAX_IDENTIFIER);
        let mut v = 0;
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Random(n) => out.push_str(&random::from_alphabet(RANDOM_ALPHABET, *n)),
                Part::UnixTime => out.push_str(&now.to_string()),
                _ => {
                    out.push_str(&variable[v][..limits[v]]);
                    v += 1;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_fit_and_keep_the_whole_random_part() {
        let t = Template::default_template();
        let long_role = "r".repeat(63);
        let name = t.render(&long_role, "c", "d", 0);
        assert_eq!(name.len(), 63);
        assert!(name.starts_with("v-rrr"));
        let random = name.rsplit('-').next().unwrap();
        assert_eq!(random.len(), DEFAULT_RANDOM);
        assert_eq!(
            t.render("ro", "c", "d", 0).len(),
            2 + 2 + 1 + DEFAULT_RANDOM
        );
    }

    #[test]
    fn templates_are_checked_when_written() {
        assert!(
            Template::parse("{{role}}-{{cluster}}-{{database}}-{{random 10}}-{{unix_time}}")
                .is_ok()
        );
        assert!(Template::parse("{{role}}").unwrap_err().contains("random"));
        assert!(Template::parse("x{{random 63}}")
            .unwrap_err()
            .contains("63"));
        assert!(Template::parse("{{rol}}{{random 9}}")
            .unwrap_err()
            .contains("unknown placeholder"));
        assert!(Template::parse("a\"b{{random 9}}")
            .unwrap_err()
            .contains("not allowed"));
        let t = Template::parse("app_{{cluster}}_{{database}}_{{random 8}}").unwrap();
        let name = t.render("r", &"c".repeat(63), &"d".repeat(63), 1);
        assert_eq!(name.len(), 63);
    }
}
