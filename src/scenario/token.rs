//! Per-client tokens: JWTs minted from templated claims, or rows of a CSV file.

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::Rng;
use serde_json::Value;

use super::error::ScenarioError;
use super::model::{AuthConfig, JwtAlgorithm, JwtConfig};
use super::template::{JsonTemplate, Template, VuState};
use crate::error::FileError;

/// Hands out one token per virtual client.
#[derive(Clone)]
pub enum TokenSource {
    /// JWTs signed with an HMAC secret.
    Jwt(Box<JwtMinter>),
    /// Tokens read from a CSV file, round-robin by client index.
    Csv(Vec<String>),
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::Jwt(m) => f
                .debug_struct("Jwt")
                .field("algorithm", &m.header.alg)
                .finish(),
            TokenSource::Csv(tokens) => f.debug_tuple("Csv").field(&tokens.len()).finish(),
        }
    }
}

/// Mints JWTs from templated claims.
#[derive(Clone)]
pub struct JwtMinter {
    key: EncodingKey,
    header: Header,
    claims: JsonTemplate,
    lifetime: Duration,
    vars: Vec<(String, Template)>,
}

impl TokenSource {
    /// Builds the source for `auth`, reading a JWT secret from its environment
    /// variable; `vars` are the scenario's vars (claims may use them).
    pub fn new(auth: &AuthConfig, vars: &[(String, Template)]) -> Result<Self, ScenarioError> {
        match &auth.jwt {
            Some(jwt) => {
                let secret = std::env::var(&jwt.secret_env)
                    .map_err(|_| ScenarioError::MissingSecret(jwt.secret_env.clone()))?;
                Ok(Self::jwt(jwt, vars, secret.as_bytes()))
            }
            None => Ok(TokenSource::Csv(
                auth.csv
                    .as_ref()
                    .map(|c| c.tokens.clone())
                    .unwrap_or_default(),
            )),
        }
    }

    /// A JWT source with an explicit secret (e.g. shared with an embedded gateway).
    pub fn jwt(config: &JwtConfig, vars: &[(String, Template)], secret: &[u8]) -> Self {
        let alg = match config.algorithm {
            JwtAlgorithm::HS256 => Algorithm::HS256,
            JwtAlgorithm::HS384 => Algorithm::HS384,
            JwtAlgorithm::HS512 => Algorithm::HS512,
        };
        TokenSource::Jwt(Box::new(JwtMinter {
            key: EncodingKey::from_secret(secret),
            header: Header::new(alg),
            claims: config.claims.clone(),
            lifetime: config.lifetime,
            vars: vars.to_vec(),
        }))
    }

    /// The token of client `state.vu`, claims rendered with `state`.
    pub fn token(&self, state: &VuState, rng: &mut impl Rng) -> Result<String, ScenarioError> {
        match self {
            TokenSource::Csv(tokens) => Ok(usize::try_from(state.vu)
                .ok()
                .and_then(|vu| tokens.get(vu % tokens.len().max(1)))
                .cloned()
                .unwrap_or_default()),
            TokenSource::Jwt(minter) => {
                let mut claims = match minter.claims.render(state, rng) {
                    Value::Object(map) => map,
                    _ => serde_json::Map::new(),
                };
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                claims.insert("iat".into(), now.into());
                claims.insert("exp".into(), (now + minter.lifetime.as_secs()).into());
                Ok(jsonwebtoken::encode(&minter.header, &claims, &minter.key)?)
            }
        }
    }

    /// The token of client `vu`, rendering the scenario's vars for it first.
    pub fn token_for(&self, vu: u64) -> Result<String, ScenarioError> {
        let mut rng = rand::rng();
        let mut state = VuState::new(vu);
        if let TokenSource::Jwt(minter) = self {
            for (name, template) in &minter.vars {
                let value = template.render(&state, &mut rng);
                state.set(name.clone(), value);
            }
        }
        self.token(&state, &mut rng)
    }
}

/// Reads the `column` of a CSV file with a header row (fields may be
/// double-quoted). Every row must have the header's field count and a
/// non-empty token.
pub fn read_csv_tokens(path: &Path, column: &str) -> Result<Vec<String>, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|e| FileError::new(path, e))?;
    let fail = |line: usize, message: String| ScenarioError::Csv {
        path: path.to_owned(),
        line,
        message,
    };
    let mut rows = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty());
    let (header_line, header) = rows
        .next()
        .ok_or_else(|| fail(1, "empty file, expected a header row".into()))?;
    let header = split_csv_line(header).map_err(|m| fail(header_line, m))?;
    let index = header
        .iter()
        .position(|h| h.trim() == column)
        .ok_or_else(|| {
            fail(
                header_line,
                format!("no column `{column}` in header {}", header.join(",")),
            )
        })?;
    let mut tokens = Vec::new();
    for (line, row) in rows {
        let fields = split_csv_line(row).map_err(|m| fail(line, m))?;
        if fields.len() != header.len() {
            return Err(fail(
                line,
                format!(
                    "{} fields, expected {} like the header",
                    fields.len(),
                    header.len()
                ),
            ));
        }
        let token = fields[index].trim();
        if token.is_empty() {
            return Err(fail(line, format!("empty `{column}`")));
        }
        tokens.push(token.to_owned());
    }
    if tokens.is_empty() {
        return Err(fail(header_line, "no token rows after the header".into()));
    }
    Ok(tokens)
}

fn split_csv_line(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', true) => quoted = false,
            ('"', false) if field.is_empty() => quoted = true,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    fields.push(field);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("chorus-token-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens.csv");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn minted_tokens_verify_with_the_secret() {
        let config = JwtConfig {
            secret_env: "UNUSED".into(),
            algorithm: JwtAlgorithm::HS384,
            claims: JsonTemplate::Object(vec![
                (
                    "sub".into(),
                    JsonTemplate::String(Template::compile("user-{{vu}}").unwrap()),
                ),
                (
                    "name".into(),
                    JsonTemplate::String(Template::compile("{{username}}").unwrap()),
                ),
            ]),
            lifetime: Duration::from_secs(600),
        };
        let vars = vec![("username".to_owned(), Template::compile("u{{vu}}").unwrap())];
        let source = TokenSource::jwt(&config, &vars, b"s3cret");
        let token = source.token_for(42).unwrap();
        let decoded = jsonwebtoken::decode::<Value>(
            &token,
            &DecodingKey::from_secret(b"s3cret"),
            &Validation::new(Algorithm::HS384),
        )
        .unwrap();
        assert_eq!(decoded.claims["sub"], "user-42");
        assert_eq!(decoded.claims["name"], "u42");
        let (iat, exp) = (
            decoded.claims["iat"].as_u64().unwrap(),
            decoded.claims["exp"].as_u64().unwrap(),
        );
        assert_eq!(exp - iat, 600);
        let wrong = jsonwebtoken::decode::<Value>(
            &token,
            &DecodingKey::from_secret(b"other"),
            &Validation::new(Algorithm::HS384),
        );
        assert!(wrong.is_err());
    }

    #[test]
    fn csv_tokens_round_robin() {
        let path = temp_file("ok", "id,token\n1,aaa\n2,\"b,b\"\n\n3,ccc\n");
        let tokens = read_csv_tokens(&path, "token").unwrap();
        assert_eq!(tokens, ["aaa", "b,b", "ccc"]);
        let source = TokenSource::Csv(tokens);
        assert_eq!(source.token_for(0).unwrap(), "aaa");
        assert_eq!(source.token_for(4).unwrap(), "b,b");
    }

    #[test]
    fn bad_csv_rows_name_file_and_line() {
        let path = temp_file("bad", "id,token\n1,aaa\n2\n");
        let err = read_csv_tokens(&path, "token").unwrap_err().to_string();
        assert_eq!(
            err,
            format!("{}:3: 1 fields, expected 2 like the header", path.display())
        );
        let path = temp_file("col", "id,tok\n1,aaa\n");
        let err = read_csv_tokens(&path, "token").unwrap_err().to_string();
        assert!(
            err.ends_with(":1: no column `token` in header id,tok"),
            "{err}"
        );
    }
}
