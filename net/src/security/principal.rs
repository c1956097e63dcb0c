//! The principal of an mTLS client: its certificate's subject as an RFC 2253 distinguished name
//! (what Java's `X500Principal.getName()` gives Kafka), mapped by `ssl.principal.mapping.rules`.
//!
//! Owns: the rule syntax and semantics of Kafka's `SslPrincipalMapper`: a comma- or
//! newline-separated list of `DEFAULT` (the DN as it is) and `RULE:pattern/replacement/[LU]`
//! (the first rule whose pattern matches the *whole* DN rewrites it, `$1`… are its groups,
//! `L`/`U` lower/upper-case the result; `\/` is a literal slash). No rule matching is an
//! authentication failure, as in Kafka. Pure: no I/O.
//! Must never: panic on any certificate bytes or rule text.

use regex::Regex;

/// `ssl.principal.mapping.rules`, parsed.
#[derive(Clone, Debug)]
pub struct PrincipalMapper {
    rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
enum Rule {
    Default,
    Rewrite { pattern: Regex, replacement: String, case: Case },
}

#[derive(Clone, Copy, Debug)]
enum Case {
    Keep,
    Lower,
    Upper,
}

impl Default for PrincipalMapper {
    /// Kafka's default rules: `DEFAULT`.
    fn default() -> Self {
        PrincipalMapper { rules: vec![Rule::Default] }
    }
}

impl PrincipalMapper {
    /// Parses the rules; an error names what is wrong (the caller adds the key).
    pub fn parse(rules: &str) -> Result<PrincipalMapper, String> {
        let mut out = Vec::new();
        let mut rest = rules;
        loop {
            rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
            if rest.is_empty() {
                break;
            }
            if let Some(after) = rest.strip_prefix("DEFAULT") {
                out.push(Rule::Default);
                rest = skip_to_separator(after)?;
            } else if let Some(after) = rest.strip_prefix("RULE:") {
                let (pattern, after) =
                    until_slash(after).ok_or_else(|| format!("rule {rest:?}: no '/' after the pattern"))?;
                let (replacement, after) =
                    until_slash(after).ok_or_else(|| format!("rule {rest:?}: no '/' after the replacement"))?;
                let (case, after) = match after.chars().next() {
                    Some('L') => (Case::Lower, &after[1..]),
                    Some('U') => (Case::Upper, &after[1..]),
                    _ => (Case::Keep, after),
                };
                let pattern = Regex::new(&format!("^(?:{})$", pattern.replace("\\/", "/")))
                    .map_err(|e| format!("rule {rest:?}: bad pattern: {e}"))?;
                out.push(Rule::Rewrite { pattern, replacement: java_replacement(&replacement), case });
                rest = skip_to_separator(after)?;
            } else {
                return Err(format!("invalid rule {rest:?} (expected DEFAULT or RULE:pattern/replacement/[LU])"));
            }
        }
        if out.is_empty() {
            return Err("no rule given".into());
        }
        Ok(PrincipalMapper { rules: out })
    }

    /// The name for `dn`, or `None` when no rule applies (the client is refused).
    pub fn map(&self, dn: &str) -> Option<String> {
        self.rules.iter().find_map(|rule| match rule {
            Rule::Default => Some(dn.to_string()),
            Rule::Rewrite { pattern, replacement, case } => {
                let captures = pattern.captures(dn)?;
                let mut name = String::new();
                captures.expand(replacement, &mut name);
                Some(match case {
                    Case::Keep => name,
                    Case::Lower => name.to_lowercase(),
                    Case::Upper => name.to_uppercase(),
                })
            }
        })
    }

    /// Kafka's principal (`User:<name>`) for the client certificate `der`, or why not.
    pub fn principal_for(&self, der: &[u8]) -> Result<String, String> {
        let dn = subject_dn(der)?;
        self.map(&dn)
            .map(|name| format!("User:{name}"))
            .ok_or_else(|| format!("no principal mapping rule applies to {dn:?}"))
    }
}

/// Text up to the first unescaped `/`, and what follows it.
fn until_slash(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                out.push('\\');
                if let Some((_, next)) = chars.next() {
                    out.push(next);
                }
            }
            '/' => return Some((out, &s[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

/// After a rule: only spaces up to a `,`, a newline or the end.
fn skip_to_separator(s: &str) -> Result<&str, String> {
    let trimmed = s.trim_start_matches([' ', '\t']);
    match trimmed.chars().next() {
        None => Ok(trimmed),
        Some(',') | Some('\n') | Some('\r') => Ok(&trimmed[1..]),
        Some(_) => Err(format!("unexpected {trimmed:?} after a rule")),
    }
}

/// A Java replacement string (`$1`, `\/`, `\$`) in the regex crate's syntax (`${1}`, `/`, `$$`).
fn java_replacement(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(other) => out.push(other),
                None => {}
            },
            '$' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                if digits.is_empty() {
                    out.push_str("$$");
                } else {
                    out.push_str(&format!("${{{digits}}}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// The certificate's subject as RFC 2253 text: the last RDN first, `,` between RDNs, `+` within
/// one, the keywords Java knows (CN, C, L, ST, STREET, O, OU, DC, UID) and dotted OIDs with
/// `#`hex values for the rest.
pub fn subject_dn(der: &[u8]) -> Result<String, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| format!("bad client certificate: {e}"))?;
    let mut rdns = Vec::new();
    for rdn in cert.subject().iter() {
        let mut parts = Vec::new();
        for attr in rdn.iter() {
            let oid = attr.attr_type().to_id_string();
            let keyword = match oid.as_str() {
                "2.5.4.3" => Some("CN"),
                "2.5.4.6" => Some("C"),
                "2.5.4.7" => Some("L"),
                "2.5.4.8" => Some("ST"),
                "2.5.4.9" => Some("STREET"),
                "2.5.4.10" => Some("O"),
                "2.5.4.11" => Some("OU"),
                "0.9.2342.19200300.100.1.25" => Some("DC"),
                "0.9.2342.19200300.100.1.1" => Some("UID"),
                _ => None,
            };
            match (keyword, attr.as_str()) {
                (Some(keyword), Ok(value)) => parts.push(format!("{keyword}={}", escape_value(value))),
                _ => {
                    let hex: String = attr.attr_value().data.iter().map(|b| format!("{b:02x}")).collect();
                    parts.push(format!("{oid}=#{hex}"));
                }
            }
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Ok(rdns.join(","))
}

/// RFC 2253 escaping of an attribute value.
fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_keeps_the_dn() {
        let mapper = PrincipalMapper::default();
        assert_eq!(mapper.map("CN=alice,O=x").as_deref(), Some("CN=alice,O=x"));
        assert_eq!(PrincipalMapper::parse("DEFAULT").unwrap().map("CN=a").as_deref(), Some("CN=a"));
    }

    /// The examples of Kafka's documentation (`ssl.principal.mapping.rules`).
    #[test]
    fn kafkas_documented_rules() {
        let rules = "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,\nRULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,\nRULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L,\nDEFAULT";
        let mapper = PrincipalMapper::parse(rules).unwrap();
        assert_eq!(
            mapper.map("CN=serviceuser,OU=ServiceUsers,O=Unknown,L=Unknown,ST=Unknown,C=Unknown").unwrap(),
            "serviceuser"
        );
        assert_eq!(
            mapper.map("CN=adminUser,OU=Admin,O=Unknown,L=Unknown,ST=Unknown,C=Unknown").unwrap(),
            "adminuser@admin"
        );
        assert_eq!(mapper.map("OU=x,CN=Bob.Smith,O=y").unwrap(), "bob.smith");
        assert_eq!(mapper.map("O=nobody").unwrap(), "O=nobody", "DEFAULT last");
    }

    #[test]
    fn case_escapes_and_no_match() {
        let upper = PrincipalMapper::parse("RULE:CN=([^,]*),O=(.*)/$2\\/$1/U").unwrap();
        assert_eq!(upper.map("CN=alice,O=acme").unwrap(), "ACME/ALICE");
        assert_eq!(upper.map("O=acme"), None, "no rule applies: refused");
        assert_eq!(upper.map("XCN=alice,O=acme"), None, "the pattern must match the whole DN");
        let slash = PrincipalMapper::parse("RULE:CN=a\\/b/$0 costs \\$5/").unwrap();
        assert_eq!(slash.map("CN=a/b").unwrap(), "CN=a/b costs $5");
        let spaced = PrincipalMapper::parse(" RULE:^CN=(.*)$/$1/ , DEFAULT ").unwrap();
        assert_eq!(spaced.map("CN=x").unwrap(), "x");
    }

    #[test]
    fn bad_rules_are_refused() {
        for bad in ["", "RULE:abc", "RULE:a/b", "RULE:(/x/", "NOPE", "DEFAULT junk", "RULE:a/b/X"] {
            assert!(PrincipalMapper::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn values_are_escaped_as_rfc_2253_says() {
        assert_eq!(escape_value("Acme, Inc."), "Acme\\, Inc.");
        assert_eq!(escape_value("#1 "), "\\#1\\ ");
        assert_eq!(escape_value("a+b"), "a\\+b");
    }

    /// A real certificate's subject, last RDN first, as Java's X500Principal writes it.
    #[test]
    fn a_certificates_subject_is_its_rfc_2253_dn() {
        use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new(); // rcgen's has a CN already
        params.distinguished_name.push(DnType::CountryName, "US");
        params.distinguished_name.push(DnType::OrganizationName, "Acme, Inc.");
        params.distinguished_name.push(DnType::CommonName, "alice");
        let der = params.self_signed(&key).unwrap().der().to_vec();
        assert_eq!(subject_dn(&der).unwrap(), "CN=alice,O=Acme\\, Inc.,C=US");
        assert_eq!(PrincipalMapper::default().principal_for(&der).unwrap(), "User:CN=alice,O=Acme\\, Inc.,C=US");
        let rules = PrincipalMapper::parse("RULE:^CN=([^,]*),.*$/$1/U").unwrap();
        assert_eq!(rules.principal_for(&der).unwrap(), "User:ALICE");
        assert!(PrincipalMapper::parse("RULE:^OU=(.*)$/$1/").unwrap().principal_for(&der).is_err(), "no rule applies");
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(subject_dn(b"not a certificate").is_err());
        assert!(PrincipalMapper::default().principal_for(&[0x30, 0x82, 0xff, 0xff]).is_err());
    }
}
