//! What a sink file holds: a credential rendered as an environment file,
//! JSON, a connection URL, or a user's template.
//!
//! Templates are parsed once, when the configuration is loaded, so an unknown
//! placeholder is a startup error and rendering cannot fail.

use serde_json::json;

use super::api::Credentials;

/// The placeholders a template may use, as written between `{{` and `}}`.
const PLACEHOLDERS: [(&str, Placeholder); 7] = [
    ("username", Placeholder::Username),
    ("password", Placeholder::Password),
    ("host", Placeholder::Host),
    ("port", Placeholder::Port),
    ("database", Placeholder::Database),
    ("connection_url", Placeholder::ConnectionUrl),
    ("lease_id", Placeholder::LeaseId),
];

#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    /// `PGHOST=...` lines (libpq's variables) plus `DATABASE_URL` and
    /// `PGSECRETS_LEASE_ID`; for `EnvironmentFile=`, `--env-file` or `. file`.
    Env,
    /// One JSON object with every field.
    Json,
    /// The connection URL alone.
    Url,
    Template(Template),
}

/// A parsed template: literal text and placeholders.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Value(Placeholder),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Placeholder {
    Username,
    Password,
    Host,
    Port,
    Database,
    ConnectionUrl,
    LeaseId,
}

impl Template {
    /// Parses `{{name}}` placeholders (spaces inside the braces allowed).
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| "a \"{{\" is never closed with \"}}\"".to_string())?;
            let name = after[..close].trim();
            let (_, placeholder) = PLACEHOLDERS
                .iter()
                .find(|(known, _)| *known == name)
                .ok_or_else(|| {
                    format!(
                        "unknown placeholder {{{{{name}}}}}: use {}",
                        PLACEHOLDERS
                            .iter()
                            .map(|(known, _)| format!("{{{{{known}}}}}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    )
                })?;
            parts.push(Part::Value(*placeholder));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }
}

fn value(placeholder: Placeholder, c: &Credentials, lease_id: &str) -> String {
    match placeholder {
        Placeholder::Username => c.username.clone(),
        Placeholder::Password => c.password.clone(),
        Placeholder::Host => c.host.clone(),
        Placeholder::Port => c.port.to_string(),
        Placeholder::Database => c.database.clone(),
        Placeholder::ConnectionUrl => c.connection_url.clone(),
        Placeholder::LeaseId => lease_id.to_string(),
    }
}

/// The sink file's contents for credentials `c` under lease `lease_id`.
pub fn render(format: &Format, c: &Credentials, lease_id: &str) -> String {
    match format {
        Format::Env => {
            let lines = [
                ("PGHOST", c.host.clone()),
                ("PGPORT", c.port.to_string()),
                ("PGDATABASE", c.database.clone()),
                ("PGUSER", c.username.clone()),
                ("PGPASSWORD", c.password.clone()),
                ("DATABASE_URL", c.connection_url.clone()),
                ("PGSECRETS_LEASE_ID", lease_id.to_string()),
            ];
            lines
                .iter()
                .map(|(k, v)| format!("{k}={}\n", env_value(v)))
                .collect()
        }
        Format::Json => {
            let object = json!({
                "username": c.username,
                "password": c.password,
                "host": c.host,
                "port": c.port,
                "database": c.database,
                "connection_url": c.connection_url,
                "lease_id": lease_id,
            });
            format!("{object:#}\n")
        }
        Format::Url => format!("{}\n", c.connection_url),
        Format::Template(t) => t
            .parts
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.clone(),
                Part::Value(placeholder) => value(*placeholder, c, lease_id),
            })
            .collect(),
    }
}

/// Values are written bare when a shell, systemd and docker all read them
/// the same way, and single-quoted (shell style) otherwise.
fn env_value(v: &str) -> String {
    let bare = |ch: char| ch.is_ascii_alphanumeric() || "_@%+=:,./?-".contains(ch);
    if !v.is_empty() && v.chars().all(bare) {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            username: "v-app-Ab12".into(),
            password: "S3cret".into(),
            host: "db.internal".into(),
            port: 5432,
            database: "app_db".into(),
            connection_url:
                "postgresql://v-app-Ab12:S3cret@db.internal:5432/app_db?sslmode=disable".into(),
        }
    }

    #[test]
    fn env_files_use_libpq_variables() {
        let text = render(&Format::Env, &creds(), "database/creds/c/d/r/x");
        assert_eq!(
            text,
            "PGHOST=db.internal\nPGPORT=5432\nPGDATABASE=app_db\nPGUSER=v-app-Ab12\n\
             PGPASSWORD=S3cret\n\
             DATABASE_URL=postgresql://v-app-Ab12:S3cret@db.internal:5432/app_db?sslmode=disable\n\
             PGSECRETS_LEASE_ID=database/creds/c/d/r/x\n"
        );
        assert_eq!(env_value("a b'c"), r"'a b'\''c'");
        assert_eq!(env_value(""), "''");
    }

    #[test]
    fn json_and_url_carry_the_same_values() {
        let json: serde_json::Value =
            serde_json::from_str(&render(&Format::Json, &creds(), "L")).unwrap();
        assert_eq!(json["port"], 5432);
        assert_eq!(json["lease_id"], "L");
        assert_eq!(json["password"], "S3cret");
        assert_eq!(
            render(&Format::Url, &creds(), "L"),
            format!("{}\n", creds().connection_url)
        );
    }

    #[test]
    fn templates_fill_every_placeholder() {
        let t = Template::parse(
            "host={{host}} port={{ port }} dbname={{database}} user={{username}} \
             password={{password}} # {{lease_id}} {{connection_url}}",
        )
        .unwrap();
        assert_eq!(
            render(&Format::Template(t), &creds(), "L"),
            "host=db.internal port=5432 dbname=app_db user=v-app-Ab12 password=S3cret # L \
             postgresql://v-app-Ab12:S3cret@db.internal:5432/app_db?sslmode=disable"
        );
    }

    #[test]
    fn template_mistakes_are_named() {
        let e = Template::parse("user={{user}}").unwrap_err();
        assert!(e.contains("unknown placeholder {{user}}"), "{e}");
        assert!(e.contains("{{username}}"), "{e}");
        let e = Template::parse("user={{username").unwrap_err();
        assert!(e.contains("never closed"), "{e}");
        assert!(Template::parse("no placeholders").is_ok());
    }
}
