//! Where the broker listens and what it tells clients, from Kafka's settings: `listeners`,
//! `advertised.listeners`, `listener.security.protocol.map`, `controller.listener.names`,
//! `process.roles`, `controller.quorum.voters`, `node.id`.
//!
//! Owns: parsing those values and deciding whether this build can honour them: any number of
//! client listeners, each PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (by name or through
//! `listener.security.protocol.map`), each advertised as `advertised.listeners` says (else at
//! its listen address); `inter.broker.listener.name` picks the one brokers reach each other on
//! (PLAINTEXT only in a cluster: the broker client has no TLS or SASL yet); a one-node KRaft `server.properties` (this node the only voter) runs
//! the embedded controller of `metadata.json` as before; a multi-voter
//! `controller.quorum.voters` with `process.roles=broker,controller` (this node a voter, its
//! CONTROLLER listener in `listeners`) or `process.roles=broker` (not a voter) makes a
//! clustered node ([`QuorumPlan`]). Pure: no sockets; the caller resolves host names.
//! Must never: accept a setting it would ignore (a Kafka user's file must not start a broker on
//! an address other than the one it names); anything not supported yet is an error saying so.

use std::collections::BTreeMap;

use sluice_net::security::protocol::SecurityProtocol;

/// One `NAME://host:port` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerSpec {
    pub name: String,
    /// Empty for "all interfaces" (`PLAINTEXT://:9092`).
    pub host: String,
    pub port: u16,
}

/// One client listener this node serves, and what Metadata advertises for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientEndpoint {
    pub listen: ListenerSpec,
    pub protocol: SecurityProtocol,
    pub advertised: Option<ListenerSpec>,
}

/// Every client listener, and which of them brokers use to reach each other (the one a
/// clustered node registers, and the one `--listen` replaces).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientListeners {
    pub endpoints: Vec<ClientEndpoint>,
    /// Index into `endpoints`.
    pub inter_broker: usize,
}

/// How this node takes part in a multi-node metadata quorum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumPlan {
    /// `controller.quorum.voters`: node id → `host:port`.
    pub voters: BTreeMap<i32, String>,
    /// `process.roles` holds `controller`.
    pub is_controller: bool,
    /// The CONTROLLER listener this voter listens on.
    pub controller_listener: Option<ListenerSpec>,
}

/// Parses a comma-separated `listeners` / `advertised.listeners` value.
pub fn parse_listeners(key: &str, value: &str) -> Result<Vec<ListenerSpec>, String> {
    let mut out: Vec<ListenerSpec> = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, address) =
            item.split_once("://").ok_or_else(|| format!("{key}: expected NAME://host:port, got {item:?}"))?;
        let (host, port) =
            address.rsplit_once(':').ok_or_else(|| format!("{key}: {item:?} has no port (NAME://host:port)"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port.parse().map_err(|_| format!("{key}: invalid port in {item:?}"))?;
        let name = name.to_ascii_uppercase();
        if name.is_empty() {
            return Err(format!("{key}: empty listener name in {item:?}"));
        }
        if out.iter().any(|l| l.name == name) {
            return Err(format!("{key}: listener {name} appears twice"));
        }
        out.push(ListenerSpec { name, host: host.to_string(), port });
    }
    if out.is_empty() {
        return Err(format!("{key}: no listener given"));
    }
    Ok(out)
}

/// Parses `listener.security.protocol.map` (`NAME:PROTOCOL,...`).
pub fn parse_protocol_map(value: &str) -> Result<BTreeMap<String, SecurityProtocol>, String> {
    let mut out = BTreeMap::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, protocol) = item
            .split_once(':')
            .ok_or_else(|| format!("listener.security.protocol.map: expected NAME:PROTOCOL, got {item:?}"))?;
        let protocol = SecurityProtocol::parse(protocol).ok_or_else(|| {
            format!("listener.security.protocol.map: unknown security protocol {:?}", protocol.trim())
        })?;
        out.insert(name.trim().to_ascii_uppercase(), protocol);
    }
    Ok(out)
}

/// The listener-related settings as given (raw strings; `None` when absent).
#[derive(Clone, Debug, Default)]
pub struct ListenerSettings {
    pub listeners: Option<String>,
    pub advertised_listeners: Option<String>,
    pub protocol_map: Option<String>,
    pub controller_listener_names: Option<String>,
    pub inter_broker_listener_name: Option<String>,
    pub process_roles: Option<String>,
    pub controller_quorum_voters: Option<String>,
}

impl ListenerSettings {
    /// Takes one key if it is a listener setting; false otherwise.
    pub fn accept(&mut self, key: &str, value: &str) -> bool {
        let slot = match key {
            "listeners" => &mut self.listeners,
            "advertised.listeners" => &mut self.advertised_listeners,
            "listener.security.protocol.map" => &mut self.protocol_map,
            "controller.listener.names" => &mut self.controller_listener_names,
            "inter.broker.listener.name" => &mut self.inter_broker_listener_name,
            "process.roles" => &mut self.process_roles,
            "controller.quorum.voters" => &mut self.controller_quorum_voters,
            _ => return false,
        };
        *slot = Some(value.to_string());
        true
    }

    /// Decides the client listeners, or why these settings cannot be served. `None` when no
    /// `listeners` was given (the `--listen` default applies).
    pub fn resolve(&self, node_id: i32) -> Result<Option<ClientListeners>, String> {
        let quorum = self.quorum(node_id)?;
        let Some(listeners) = &self.listeners else {
            if self.advertised_listeners.is_some() {
                return Err("advertised.listeners needs listeners".into());
            }
            return Ok(None);
        };
        let listeners = parse_listeners("listeners", listeners)?;
        let protocol_map = match &self.protocol_map {
            Some(v) => parse_protocol_map(v)?,
            None => BTreeMap::new(),
        };
        let controller_names = self.controller_names();
        let mut advertised = match &self.advertised_listeners {
            None => Vec::new(),
            Some(v) => parse_listeners("advertised.listeners", v)?,
        };
        advertised.retain(|l| !controller_names.contains(&l.name));
        let mut endpoints: Vec<ClientEndpoint> = Vec::new();
        for listener in listeners {
            if controller_names.contains(&listener.name) {
                // The controller's own listener (see `quorum`), not a client one.
                continue;
            }
            let protocol = match protocol_map.get(&listener.name) {
                Some(p) => *p,
                None => SecurityProtocol::parse(&listener.name).ok_or_else(|| {
                    format!(
                        "listeners: {} is not a security protocol and listener.security.protocol.map does not map it",
                        listener.name
                    )
                })?,
            };
            if let Some(other) =
                endpoints.iter().find(|e| e.listen.host == listener.host && e.listen.port == listener.port)
            {
                return Err(format!(
                    "listeners: {} and {} both use {}:{}",
                    other.listen.name, listener.name, listener.host, listener.port
                ));
            }
            let advertised = advertised.iter().find(|a| a.name == listener.name).cloned();
            endpoints.push(ClientEndpoint { listen: listener, protocol, advertised });
        }
        if endpoints.is_empty() {
            return Err("listeners: no client listener (only the CONTROLLER one)".into());
        }
        if let Some(unknown) = advertised.iter().find(|a| !endpoints.iter().any(|e| e.listen.name == a.name)) {
            return Err(format!("advertised.listeners: {} is not in listeners", unknown.name));
        }
        // Kafka's default is the listener for security.inter.broker.protocol=PLAINTEXT.
        let inter_broker = match &self.inter_broker_listener_name {
            Some(name) => {
                let name = name.trim().to_ascii_uppercase();
                endpoints.iter().position(|e| e.listen.name == name).ok_or_else(|| {
                    format!("inter.broker.listener.name: {name} is not a client listener in listeners")
                })?
            }
            None => endpoints
                .iter()
                .position(|e| e.listen.name == "PLAINTEXT")
                .or_else(|| endpoints.iter().position(|e| e.protocol == SecurityProtocol::Plaintext))
                .unwrap_or(0),
        };
        let protocol = endpoints[inter_broker].protocol;
        if quorum.is_some() && protocol != SecurityProtocol::Plaintext {
            return Err(format!(
                "inter.broker.listener.name: {} uses {protocol}; brokers of a cluster reach each other over a PLAINTEXT listener only for now (the broker client speaks neither TLS nor SASL yet)",
                endpoints[inter_broker].listen.name
            ));
        }
        Ok(Some(ClientListeners { endpoints, inter_broker }))
    }

    /// `process.roles` and `controller.quorum.voters`: `None` for the embedded one-node
    /// controller (neither set, or this node the only voter), else this node's part in the
    /// quorum.
    pub fn quorum(&self, node_id: i32) -> Result<Option<QuorumPlan>, String> {
        let roles: Option<Vec<String>> = self.process_roles.as_ref().map(|roles| {
            let mut roles: Vec<String> =
                roles.split(',').map(|r| r.trim().to_string()).filter(|s| !s.is_empty()).collect();
            roles.sort_unstable();
            roles.dedup();
            roles
        });
        let voters = match &self.controller_quorum_voters {
            Some(v) => Some(sluice_net::controller_quorum::parse_voters(v)?),
            None => None,
        };
        let single_self = voters.as_ref().is_some_and(|v| v.len() == 1 && v.contains_key(&node_id));
        let roles: Vec<&str> = match &roles {
            None if voters.is_none() || single_self => return Ok(None),
            None => return Err("controller.quorum.voters with other voters needs process.roles".into()),
            Some(roles) => roles.iter().map(String::as_str).collect(),
        };
        let voters = voters.ok_or("process.roles needs controller.quorum.voters (the quorum to join)")?;
        let is_controller = match roles.as_slice() {
            ["broker", "controller"] => true,
            ["broker"] => false,
            ["controller"] => {
                return Err(
                    "process.roles=controller: sluice runs broker or broker,controller nodes only for now".into()
                )
            }
            other => return Err(format!("process.roles={}: expected broker and/or controller", other.join(","))),
        };
        if is_controller != voters.contains_key(&node_id) {
            return Err(if is_controller {
                format!("controller.quorum.voters must name this controller (node.id={node_id})")
            } else {
                format!("node.id={node_id} is in controller.quorum.voters but process.roles has no controller")
            });
        }
        if is_controller && single_self {
            return Ok(None);
        }
        let controller_listener = if is_controller {
            let names = self.controller_names();
            let listeners = parse_listeners("listeners", self.listeners.as_deref().unwrap_or_default())
                .map_err(|e| format!("{e} (a controller needs its CONTROLLER listener)"))?;
            let found = listeners.into_iter().find(|l| names.contains(&l.name)).ok_or_else(|| {
                format!("listeners: no listener named in controller.listener.names ({})", names.join(","))
            })?;
            Some(found)
        } else {
            None
        };
        Ok(Some(QuorumPlan { voters, is_controller, controller_listener }))
    }

    fn controller_names(&self) -> Vec<String> {
        self.controller_listener_names
            .as_deref()
            .unwrap_or("CONTROLLER")
            .split(',')
            .map(|s| s.trim().to_ascii_uppercase())
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// Parses `log.dirs` / `log.dir`: exactly one directory for now.
pub fn parse_log_dirs(key: &str, value: &str) -> Result<std::path::PathBuf, String> {
    let dirs: Vec<&str> = value.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    match dirs.as_slice() {
        [one] => Ok(std::path::PathBuf::from(one)),
        [] => Err(format!("{key}: no directory given")),
        _ => Err(format!(
            "{key}: {} directories; sluice uses one log dir for now (JBOD is not supported yet)",
            dirs.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> ListenerSettings {
        let mut s = ListenerSettings::default();
        for (k, v) in pairs {
            assert!(s.accept(k, v), "{k}");
        }
        s
    }

    #[test]
    fn a_plaintext_listener_is_served_and_advertised() {
        let s = settings(&[
            ("listeners", "PLAINTEXT://127.0.0.1:19092"),
            ("advertised.listeners", "PLAINTEXT://broker.example:9092"),
        ]);
        let resolved = s.resolve(1).unwrap().unwrap();
        let endpoint = &resolved.endpoints[resolved.inter_broker];
        assert_eq!(endpoint.listen, ListenerSpec { name: "PLAINTEXT".into(), host: "127.0.0.1".into(), port: 19092 });
        assert_eq!(endpoint.protocol, SecurityProtocol::Plaintext);
        assert_eq!(endpoint.advertised.clone().unwrap().host, "broker.example");
        assert_eq!(settings(&[]).resolve(1).unwrap(), None, "no listeners: the --listen default");
    }

    #[test]
    fn kafkas_single_node_kraft_file_is_accepted() {
        let s = settings(&[
            ("process.roles", "broker,controller"),
            ("controller.quorum.voters", "1@localhost:9093"),
            ("listeners", "PLAINTEXT://:9092,CONTROLLER://:9093"),
            ("listener.security.protocol.map", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"),
            ("controller.listener.names", "CONTROLLER"),
            ("inter.broker.listener.name", "PLAINTEXT"),
        ]);
        let resolved = s.resolve(1).unwrap().unwrap();
        assert_eq!(resolved.endpoints.len(), 1, "the CONTROLLER listener is not a client one");
        assert_eq!(
            resolved.endpoints[0].listen,
            ListenerSpec { name: "PLAINTEXT".into(), host: "".into(), port: 9092 }
        );
        let named = settings(&[
            ("listeners", "CLIENT://127.0.0.1:9092"),
            ("listener.security.protocol.map", "CLIENT:PLAINTEXT"),
        ]);
        assert_eq!(named.resolve(1).unwrap().unwrap().endpoints[0].listen.name, "CLIENT");
    }

    #[test]
    fn what_is_not_supported_yet_is_refused_with_a_reason() {
        let refused = [
            vec![("listeners", "PLAINTEXT://127.0.0.1:9092,SSL://127.0.0.1:9092")],
            vec![("listeners", "A://127.0.0.1:9092"), ("listener.security.protocol.map", "A:TLS")],
            vec![("listeners", "PLAINTEXT://127.0.0.1:9092"), ("inter.broker.listener.name", "SSL")],
            vec![
                ("process.roles", "broker"),
                ("controller.quorum.voters", "2@a:9093,3@b:9093"),
                ("listeners", "SSL://127.0.0.1:9094"),
            ],
            vec![("listeners", "CLIENT://127.0.0.1:9092")],
            vec![("listeners", "PLAINTEXT://127.0.0.1")],
            vec![("listeners", "127.0.0.1:9092")],
            vec![("process.roles", "broker")],
            vec![("process.roles", "controller"), ("controller.quorum.voters", "1@a:9093")],
            vec![("controller.quorum.voters", "1@a:9093,2@b:9093,3@c:9093")],
            vec![("controller.quorum.voters", "2@localhost:9093")],
            vec![("process.roles", "broker"), ("controller.quorum.voters", "1@a:9093,2@b:9093")],
            vec![("process.roles", "broker,controller"), ("controller.quorum.voters", "2@a:9093,3@b:9093")],
            vec![
                ("process.roles", "broker,controller"),
                ("controller.quorum.voters", "1@a:9093,2@b:9093"),
                ("listeners", "PLAINTEXT://127.0.0.1:9092"),
            ],
            vec![("advertised.listeners", "PLAINTEXT://x:1")],
            vec![("listeners", "PLAINTEXT://:9092"), ("advertised.listeners", "OTHER://x:1")],
        ];
        for pairs in refused {
            let result = settings(&pairs).resolve(1);
            assert!(result.is_err(), "{pairs:?} must be refused, got {result:?}");
        }
    }

    #[test]
    fn a_multi_voter_quorum_makes_a_clustered_node() {
        let voters = "1@127.0.0.1:9093,2@127.0.0.1:19093,3@127.0.0.1:29093";
        let s = settings(&[
            ("process.roles", "broker,controller"),
            ("listeners", "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"),
            ("controller.quorum.voters", voters),
        ]);
        assert_eq!(s.resolve(1).unwrap().unwrap().endpoints[0].listen.port, 9092);
        let plan = s.quorum(1).unwrap().unwrap();
        assert!(plan.is_controller);
        assert_eq!(plan.voters.len(), 3);
        assert_eq!(plan.controller_listener.unwrap().port, 9093);
        let broker = settings(&[
            ("process.roles", "broker"),
            ("listeners", "PLAINTEXT://127.0.0.1:9094"),
            ("controller.quorum.voters", voters),
        ]);
        let plan = broker.quorum(4).unwrap().unwrap();
        assert!(!plan.is_controller && plan.controller_listener.is_none());
        assert!(broker.quorum(1).is_err(), "a voter id on a broker-only node");
        assert_eq!(settings(&[]).quorum(1).unwrap(), None);
        let single = settings(&[("process.roles", "broker,controller"), ("controller.quorum.voters", "1@x:9093")]);
        assert_eq!(single.quorum(1).unwrap(), None, "one voter, this node: the embedded controller");
    }

    /// Issue #18's example: four listeners, named ones through the protocol map.
    #[test]
    fn every_security_protocol_is_a_client_listener() {
        let s = settings(&[
            (
                "listeners",
                "SASL_SSL://127.0.0.1:9094,SASL_PLAINTEXT://127.0.0.1:9095,SSL://127.0.0.1:9096,PLAINTEXT://127.0.0.1:9092,INTERNAL://127.0.0.1:9097",
            ),
            ("listener.security.protocol.map", "INTERNAL:SSL,PLAINTEXT:PLAINTEXT"),
            ("advertised.listeners", "SSL://tls.example:443,PLAINTEXT://plain.example:9092"),
        ]);
        let resolved = s.resolve(1).unwrap().unwrap();
        let protocols: Vec<(String, SecurityProtocol)> =
            resolved.endpoints.iter().map(|e| (e.listen.name.clone(), e.protocol)).collect();
        assert_eq!(
            protocols,
            vec![
                ("SASL_SSL".to_string(), SecurityProtocol::SaslSsl),
                ("SASL_PLAINTEXT".to_string(), SecurityProtocol::SaslPlaintext),
                ("SSL".to_string(), SecurityProtocol::Ssl),
                ("PLAINTEXT".to_string(), SecurityProtocol::Plaintext),
                ("INTERNAL".to_string(), SecurityProtocol::Ssl),
            ]
        );
        assert_eq!(resolved.endpoints[resolved.inter_broker].listen.name, "PLAINTEXT", "Kafka's default");
        assert_eq!(resolved.endpoints[2].advertised.as_ref().unwrap().port, 443);
        assert_eq!(resolved.endpoints[0].advertised, None, "not advertised: its listen address");
        let chosen = settings(&[
            ("listeners", "PLAINTEXT://127.0.0.1:9092,SSL://127.0.0.1:9096"),
            ("inter.broker.listener.name", "ssl"),
        ]);
        let resolved = chosen.resolve(1).unwrap().unwrap();
        assert_eq!(resolved.endpoints[resolved.inter_broker].listen.name, "SSL", "a single node may name SSL");
        let unknown_advertised =
            settings(&[("listeners", "PLAINTEXT://127.0.0.1:9092"), ("advertised.listeners", "SSL://x:1")]);
        assert!(unknown_advertised.resolve(1).is_err());
    }

    #[test]
    fn one_log_dir() {
        assert_eq!(
            parse_log_dirs("log.dirs", " /var/lib/sluice ").unwrap(),
            std::path::PathBuf::from("/var/lib/sluice")
        );
        assert!(parse_log_dirs("log.dirs", "/a,/b").is_err());
        assert!(parse_log_dirs("log.dirs", "").is_err());
    }
}
