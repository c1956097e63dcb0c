//! Real-client data path: rdkafka (librdkafka) producing and consuming through sluice.

mod support;

use std::time::{Duration, Instant};

use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use support::*;

#[test]
fn keyed_messages_with_headers_and_timestamps_round_trip_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 2);
    let bootstrap = broker.bootstrap();
    let producer = future_producer(&bootstrap, &[("linger.ms", "5")]);
    let mut sent = Vec::new();
    for i in 0..200u32 {
        let key = format!("key-{}", i % 13);
        let value: Vec<u8> = (0..(i % 97)).map(|b| (b as u8).wrapping_mul(31).wrapping_add(i as u8)).collect();
        let ts = 1_700_000_000_000i64 + i as i64;
        let headers = OwnedHeaders::new().insert(Header { key: "h", value: Some(&i.to_be_bytes()) });
        let delivery = producer
            .send_result(FutureRecord::to("roundtrip").key(&key).payload(&value).timestamp(ts).headers(headers));
        let delivery = delivery.expect("queued");
        sent.push((key.clone(), value.clone(), ts, i, delivery));
    }
    let mut expected = Vec::new();
    for (key, value, ts, i, delivery) in sent {
        let delivered = futures::executor::block_on(delivery).expect("delivered").expect("acked");
        let (partition, offset) = (delivered.partition, delivered.offset);
        assert_eq!(partition, 0);
        expected.push((offset, key, value, ts, i));
    }
    let consumer = assigned_consumer(&bootstrap, "roundtrip", &[(0, 0)], &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got.len() < expected.len() && Instant::now() < deadline {
        if let Some(m) = consumer.poll(POLL) {
            let m = m.expect("message");
            let header = m.headers().expect("headers").get(0);
            assert_eq!(header.key, "h");
            got.push((
                m.offset(),
                String::from_utf8(m.key().unwrap().to_vec()).unwrap(),
                m.payload().unwrap_or_default().to_vec(),
                m.timestamp().to_millis().unwrap(),
                u32::from_be_bytes(header.value.unwrap().try_into().unwrap()),
            ));
        }
    }
    expected.sort();
    assert_eq!(got, expected, "every message back, in offset order, byte-exact");
    drop(consumer);
    broker.stop();
}

#[test]
fn raw_client_speaks_api_versions_and_metadata() {
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 1);
    let mut client = raw::RawClient::connect(&broker.bootstrap());
    let versions = client.send(&ApiVersionsRequest::default(), 3);
    assert_eq!(versions.error_code, 0);
    let produce = versions.api_keys.iter().find(|k| k.api_key == 0).expect("Produce advertised");
    assert_eq!(produce.min_version, 0, "librdkafka needs Produce min 0 (KAFKA-18659)");
    let metadata = client.send(&MetadataRequest::default().with_topics(None), 12);
    assert_eq!(metadata.brokers.len(), 1);
    assert_eq!(metadata.brokers[0].port, broker.port as i32);
    assert!(metadata.cluster_id.is_some());
    broker.stop();
}

/// Consumes everything from `topic` partition 0 and returns (offset, payload) pairs.
fn consume_all(bootstrap: &str, topic: &str, expected: usize) -> Vec<(i64, Vec<u8>)> {
    consume_all_with(bootstrap, topic, expected, &[])
}

/// [`consume_all`] with consumer settings.
fn consume_all_with(bootstrap: &str, topic: &str, expected: usize, extra: &[(&str, &str)]) -> Vec<(i64, Vec<u8>)> {
    let consumer = assigned_consumer(bootstrap, topic, &[(0, 0)], extra);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = Vec::new();
    while got.len() < expected && Instant::now() < deadline {
        if let Some(m) = consumer.poll(POLL) {
            let m = m.expect("message");
            got.push((m.offset(), m.payload().unwrap_or_default().to_vec()));
        }
    }
    got
}

#[test]
fn data_on_disk_is_served_byte_exact_with_and_without_sendfile_and_page_cache() {
    // (sluice.fetch.sendfile, sluice.segment.io)
    for (sendfile, segment_io) in [("true", "direct"), ("false", "direct"), ("true", "buffered"), ("false", "buffered")]
    {
        let dir = tempfile::tempdir().unwrap();
        // No tail cache: every fetch is served from the segment files.
        let sendfile_flag = format!("sluice.fetch.sendfile={sendfile}");
        let io_flag = format!("sluice.segment.io={segment_io}");
        let args = ["--cores", "2", "--set", "sluice.tail.cache.bytes=0", "--set", &sendfile_flag, "--set", &io_flag];
        let broker = Broker::start_with(dir.path(), &args);
        broker.wait_for("sluice broker started");
        let bootstrap = broker.bootstrap();
        let producer = future_producer(&bootstrap, &[("linger.ms", "20"), ("batch.size", "200000")]);
        let payloads: Vec<Vec<u8>> =
            (0..3000u32).map(|i| (0..(100 + i % 900)).map(|b| (b as u8) ^ (i as u8)).collect()).collect();
        let deliveries: Vec<_> = payloads
            .iter()
            .map(|p| producer.send_result(FutureRecord::<(), _>::to("disk").payload(p)).expect("queued"))
            .collect();
        for d in deliveries {
            futures::executor::block_on(d).expect("delivered").expect("acked");
        }
        drop(producer);
        let check = |bootstrap: &str, when: &str| {
            let got = consume_all(bootstrap, "disk", payloads.len());
            assert_eq!(got.len(), payloads.len(), "sendfile={sendfile} io={segment_io} {when}");
            for (i, (offset, payload)) in got.iter().enumerate() {
                assert_eq!(*offset, i as i64);
                assert_eq!(payload, &payloads[i], "sendfile={sendfile} io={segment_io} {when} offset {offset}");
            }
        };
        check(&bootstrap, "before restart");
        broker.stop();
        // Reopened segments (recovery reads them back) in the same mode.
        let broker = Broker::start_with(dir.path(), &args);
        broker.wait_for("sluice broker started");
        check(&broker.bootstrap(), "after restart");
        broker.stop();
    }
}

#[test]
fn a_consumer_tailing_the_files_with_read_ahead_gets_exact_bytes_while_the_tail_page_is_rewritten() {
    // Read-ahead (`sluice.fetch.readahead.bytes`) fills the page cache past each fetch while
    // the producer keeps rewriting the active segment's partial last page (one small batch per
    // record, direct I/O). With no tail cache every fetch is a sendfile from the file; a page
    // read ahead before its final write would show up here as wrong bytes.
    let dir = tempfile::tempdir().unwrap();
    let args = ["--cores", "1", "--set", "sluice.tail.cache.bytes=0", "--set", "sluice.fetch.readahead.bytes=1048576"];
    let broker = Broker::start_with(dir.path(), &args);
    broker.wait_for("sluice broker started");
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "tailed", 1);
    let payloads: Vec<Vec<u8>> = (0..4000u32)
        .map(|i| (0..(50 + i * 7 % 1500)).map(|b| (b as u8).wrapping_mul(31) ^ (i as u8)).collect())
        .collect();
    let expected = payloads.len();
    let producer = future_producer(&bootstrap, &[("linger.ms", "0"), ("max.in.flight", "1")]);
    let send = |p: &Vec<u8>| {
        let d = producer.send_result(FutureRecord::<(), _>::to("tailed").payload(p)).expect("queued");
        futures::executor::block_on(d).expect("delivered").expect("acked");
    };
    // Half first, so the reader starts behind the written end and reads ahead up to it.
    payloads[..expected / 2].iter().for_each(send);
    let reader = {
        let bootstrap = bootstrap.clone();
        // Small fetches, so the consumer keeps coming back for the bytes just written.
        let settings = [
            ("fetch.max.bytes", "1048576"),
            ("message.max.bytes", "1048576"),
            ("max.partition.fetch.bytes", "8192"),
            ("fetch.wait.max.ms", "5"),
        ];
        std::thread::spawn(move || consume_all_with(&bootstrap, "tailed", expected, &settings))
    };
    payloads[expected / 2..].iter().for_each(send);
    drop(producer);
    let got = reader.join().expect("reader");
    assert_eq!(got.len(), expected);
    for (i, (offset, payload)) in got.iter().enumerate() {
        assert_eq!(*offset, i as i64);
        assert_eq!(payload, &payloads[i], "offset {offset}");
    }
    broker.stop();
}

#[test]
fn discard_mode_acknowledges_produce_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with(dir.path(), &["--cores", "1", "--set", "sluice.produce.discard=true"]);
    broker.wait_for("DISCARDED");
    broker.wait_for("sluice broker started");
    let bootstrap = broker.bootstrap();
    let producer = future_producer(&bootstrap, &[("linger.ms", "2")]);
    let deliveries: Vec<_> = (0..100u32)
        .map(|i| {
            producer.send_result(FutureRecord::<(), _>::to("discarded").payload(&i.to_be_bytes())).expect("queued")
        })
        .collect();
    for d in deliveries {
        futures::executor::block_on(d).expect("delivered").expect("acked");
    }
    let fetched = raw_fetch(&bootstrap, "discarded", 0, 0);
    assert_eq!(fetched.error_code, 0);
    assert_eq!(fetched.high_watermark, 0, "nothing was stored");
    assert!(fetched.records.is_empty());
    drop(producer);
    broker.stop();
}
