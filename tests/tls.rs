//! TLS and several listeners (issue #18, transport half): a broker with a PLAINTEXT and an SSL
//! listener at once serves librdkafka over both; Metadata names the port of the listener asked;
//! `ssl.client.auth=required` refuses a client without a certificate; garbage, plaintext on the
//! TLS port and a stalled handshake close only their own connection; a bad keystore stops the
//! start with exit code 2. The CA and certificates are made at test time (rcgen).

mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use support::{free_port, Broker};

/// A test CA, a server certificate for 127.0.0.1/localhost and a client certificate, as PEM
/// files in `dir`.
struct Pki {
    ca: PathBuf,
    /// The server's certificate chain and key in one file (`ssl.keystore.location`).
    keystore: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    /// A certificate with a key that is not its own.
    mismatched_keystore: PathBuf,
}

fn make_pki(dir: &Path) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "sluice test CA");
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca = ca_params.self_signed(&ca_key).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let mut server_params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    server_params.distinguished_name.push(DnType::CommonName, "localhost");
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = server_params.signed_by(&server_key, &ca, &ca_key).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params.distinguished_name = DistinguishedName::new(); // subject O=sluice,CN=alice
    client_params.distinguished_name.push(DnType::OrganizationName, "sluice");
    client_params.distinguished_name.push(DnType::CommonName, "alice");
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();

    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    Pki {
        ca: write("ca.pem", ca.pem()),
        keystore: write("server.pem", format!("{}{}", server.pem(), server_key.serialize_pem())),
        client_cert: write("client.pem", client.pem()),
        client_key: write("client.key", client_key.serialize_pem()),
        mismatched_keystore: write("mismatched.pem", format!("{}{}", server.pem(), client_key.serialize_pem())),
    }
}

/// A broker with a PLAINTEXT and an SSL listener, started and serving.
struct TlsBroker {
    broker: Broker,
    plaintext: String,
    ssl: String,
}

fn start(data_dir: &Path, pki: &Pki, extra: &[&str]) -> TlsBroker {
    let (plain_port, ssl_port) = (free_port(), free_port());
    let mut args: Vec<String> = vec!["broker".into(), "--data-dir".into(), data_dir.display().to_string()];
    args.extend(["--cores".into(), "2".into()]);
    args.extend(["--set".into(), format!("listeners=PLAINTEXT://127.0.0.1:{plain_port},SSL://127.0.0.1:{ssl_port}")]);
    args.extend(["--set".into(), "ssl.keystore.type=PEM".into()]);
    args.extend(["--set".into(), format!("ssl.keystore.location={}", pki.keystore.display())]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let broker = Broker::spawn(&args, plain_port, &[]);
    broker.wait_for("sluice broker started");
    TlsBroker { broker, plaintext: format!("127.0.0.1:{plain_port}"), ssl: format!("127.0.0.1:{ssl_port}") }
}

fn ssl_config(pki: &Pki, with_cert: bool) -> Vec<(&'static str, String)> {
    let mut c = vec![("security.protocol", "ssl".to_string()), ("ssl.ca.location", pki.ca.display().to_string())];
    if with_cert {
        c.push(("ssl.certificate.location", pki.client_cert.display().to_string()));
        c.push(("ssl.key.location", pki.client_key.display().to_string()));
    }
    c
}

fn producer(bootstrap: &str, ssl: &[(&str, String)]) -> FutureProducer {
    let extra: Vec<(&str, &str)> = ssl.iter().map(|(k, v)| (*k, v.as_str())).collect();
    support::future_producer(bootstrap, &extra)
}

/// The port of every broker Metadata lists, asked through `bootstrap` by librdkafka.
fn advertised_ports(bootstrap: &str, ssl: &[(&str, String)]) -> Result<Vec<u16>, String> {
    let p = producer(bootstrap, ssl);
    let metadata = p.client().fetch_metadata(None, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    Ok(metadata.brokers().iter().map(|b| b.port() as u16).collect())
}

fn port_of(bootstrap: &str) -> u16 {
    bootstrap.rsplit(':').next().unwrap().parse().unwrap()
}

fn produce(p: &FutureProducer, topic: &str, values: &[Vec<u8>]) {
    for v in values {
        let delivery = futures::executor::block_on(
            p.send(FutureRecord::<(), [u8]>::to(topic).payload(v.as_slice()), Duration::from_secs(20)),
        );
        delivery.map_err(|(e, _)| e).expect("delivered");
    }
}

fn consume_all(bootstrap: &str, ssl: &[(&str, String)], topic: &str, count: usize) -> Vec<Vec<u8>> {
    let extra: Vec<(&str, &str)> = ssl.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let consumer: BaseConsumer = support::assigned_consumer(bootstrap, topic, &[(0, 0)], &extra);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got.len() < count && Instant::now() < deadline {
        if let Some(message) = consumer.poll(support::POLL) {
            got.push(message.expect("message").payload().unwrap_or_default().to_vec());
        }
    }
    got
}

/// librdkafka produces and consumes over the SSL listener (fetched data comes from segment
/// files: on TLS they are read and encrypted instead of sent with sendfile) while the
/// PLAINTEXT listener serves the same topic; Metadata on each port names that port.
#[test]
fn rdkafka_over_ssl_and_plaintext_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let b = start(&dir.path().join("data"), &pki, &["--set", "sluice.tail.cache.bytes=0"]);
    let ssl = ssl_config(&pki, false);

    assert_eq!(advertised_ports(&b.ssl, &ssl).unwrap(), vec![port_of(&b.ssl)], "SSL clients get the SSL endpoint");
    assert_eq!(advertised_ports(&b.plaintext, &[]).unwrap(), vec![port_of(&b.plaintext)]);

    support::create_topic(&b.plaintext, "tls-topic", 1);
    // Values up to 300 KiB: records span many TLS records (16 KiB each) and chunks.
    let values: Vec<Vec<u8>> =
        (0..60u32).map(|i| (0..(i as usize * 5_000 + 1)).map(|j| (i as usize + j) as u8).collect()).collect();
    produce(&producer(&b.ssl, &ssl), "tls-topic", &values[..30]);
    produce(&producer(&b.plaintext, &[]), "tls-topic", &values[30..]);
    assert_eq!(consume_all(&b.ssl, &ssl, "tls-topic", values.len()), values, "every record back over SSL, in order");
    assert_eq!(consume_all(&b.plaintext, &[], "tls-topic", values.len()), values, "and over PLAINTEXT");
    b.broker.stop();
}

/// `ssl.client.auth=required`: a client without a certificate is refused (its handshake
/// fails), one with a certificate the truststore's CA signed is served while
/// `ssl.principal.mapping.rules` maps its subject, and refused when no rule does.
#[test]
fn mtls_required_refuses_a_client_without_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let truststore = format!("ssl.truststore.location={}", pki.ca.display());
    let b = start(
        &dir.path().join("data"),
        &pki,
        &[
            "--set",
            "ssl.client.auth=required",
            "--set",
            &truststore,
            "--set",
            "ssl.principal.mapping.rules=RULE:^CN=([^,]*),O=sluice$/$1/L",
        ],
    );
    let refused = advertised_ports(&b.ssl, &ssl_config(&pki, false));
    assert!(refused.is_err(), "no client certificate: {refused:?}");
    let with_cert = ssl_config(&pki, true);
    assert_eq!(advertised_ports(&b.ssl, &with_cert).unwrap(), vec![port_of(&b.ssl)]);
    support::create_topic(&b.plaintext, "mtls", 1);
    let values: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 100]).collect();
    produce(&producer(&b.ssl, &with_cert), "mtls", &values);
    assert_eq!(consume_all(&b.ssl, &with_cert, "mtls", values.len()), values);
    b.broker.stop();

    // The client's subject is CN=alice,O=sluice: the rule above mapped it; with a rule for
    // other names only, no principal can be made and the client is refused, as in Kafka.
    let b = start(
        &dir.path().join("data"),
        &pki,
        &[
            "--set",
            "ssl.client.auth=required",
            "--set",
            &truststore,
            "--set",
            "ssl.principal.mapping.rules=RULE:^CN=bob,.*$/bob/",
        ],
    );
    let unmapped = advertised_ports(&b.ssl, &with_cert);
    assert!(unmapped.is_err(), "no principal mapping rule applies: {unmapped:?}");
    b.broker.stop();
}

/// Reads until the broker closes the connection: true if it did within `within`.
fn closed_within(stream: &mut std::net::TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        stream
            .set_read_timeout(Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // a TLS alert before the close
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
    false
}

/// Garbage and a plaintext request on the TLS port, and a TLS client on the PLAINTEXT port,
/// close only their own connection: an SSL producer connected before goes on producing. A
/// client that starts no handshake is closed after the handshake bound (10 s).
#[test]
fn bad_input_on_the_tls_port_closes_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let b = start(&dir.path().join("data"), &pki, &[]);
    let ssl = ssl_config(&pki, false);
    support::create_topic(&b.plaintext, "survivor", 1);
    let survivor = producer(&b.ssl, &ssl);
    produce(&survivor, "survivor", &[b"before".to_vec()]);

    let mut stalled = std::net::TcpStream::connect(&b.ssl).unwrap();
    let stalled_at = Instant::now();

    let mut garbage = std::net::TcpStream::connect(&b.ssl).unwrap();
    garbage.write_all(&[0x16, 0x03, 0x01, 0x00, 0x10]).unwrap(); // a handshake record header...
    garbage.write_all(&[0xAB; 16]).unwrap(); // ...of garbage
    assert!(closed_within(&mut garbage, Duration::from_secs(5)), "a garbage handshake is closed");

    let (_, request) = support::raw::RawClient::connect(&b.plaintext)
        .encode(&kafka_protocol::messages::ApiVersionsRequest::default(), 0);
    let mut plain_on_tls = std::net::TcpStream::connect(&b.ssl).unwrap();
    plain_on_tls.write_all(&request).unwrap();
    assert!(closed_within(&mut plain_on_tls, Duration::from_secs(5)), "a plaintext request on the TLS port is closed");

    let tls_on_plain = advertised_ports(&b.plaintext, &ssl);
    assert!(tls_on_plain.is_err(), "a TLS client on the PLAINTEXT port: {tls_on_plain:?}");

    produce(&survivor, "survivor", &[b"after".to_vec()]);
    assert_eq!(consume_all(&b.ssl, &ssl, "survivor", 2), vec![b"before".to_vec(), b"after".to_vec()]);

    assert!(closed_within(&mut stalled, Duration::from_secs(20)), "a stalled handshake is closed");
    let waited = stalled_at.elapsed();
    assert!(waited >= Duration::from_secs(9), "closed after the 10 s bound, not before ({waited:?})");
    b.broker.stop();
}

/// A TLS listener whose keystore is missing, not PEM, or holds a key that is not the
/// certificate's: the broker exits 2 at start, touching nothing.
#[test]
fn a_bad_keystore_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "this is not PEM\n").unwrap();
    let port = free_port();
    let cases = [
        Some(dir.path().join("missing.pem")),
        Some(not_pem),
        Some(pki.mismatched_keystore.clone()),
        None, // an SSL listener without ssl.keystore.location
    ];
    for keystore in cases {
        let data_dir = dir.path().join("data");
        let mut args: Vec<String> = vec!["broker".into(), "--data-dir".into(), data_dir.display().to_string()];
        args.extend(["--set".into(), format!("listeners=SSL://127.0.0.1:{port}")]);
        if let Some(path) = &keystore {
            args.extend(["--set".into(), format!("ssl.keystore.location={}", path.display())]);
        }
        let broker = Broker::spawn(&args, port, &[]);
        assert_eq!(broker.wait_exit(), 2, "keystore {keystore:?} must be refused with exit 2");
        assert!(!data_dir.exists(), "a refused start touches nothing");
    }
}
