//! Writes the committed seed corpora: `cargo run --example gen_seeds` (inside fuzz/) rewrites
//! `seeds/request_decode/` and `seeds/batch_validate/` deterministically, checking on the way
//! that every request seed decodes and every batch seed validates (so a seed that stops being
//! valid after a protocol change fails loudly here instead of silently seeding nothing).

use std::path::Path;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, MetadataRequest, ProduceRequest, ProducerId, RequestHeader, RequestKind, TopicName,
    WriteTxnMarkersRequest,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use sluice_engine::batch::{
    build_batch, build_batch_of_size, compute_crc, validate_from_client, validate_stored, BATCH_HEADER_LEN,
};
use sluice_engine::txn_marker::{encode_marker_batch, EndTxnMarker};
use sluice_net::connection::{decode_request, Decoded};

/// `size ++ header ++ body` for one request.
fn frame(api: ApiKey, version: i16, correlation_id: i32, body: &RequestKind) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("sluice-fuzz")));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, api.request_header_version(version)).expect("encode header");
    body.encode(&mut buf, version).expect("encode body");
    // The frame must decode as the broker decodes it.
    match decode_request(buf.clone().freeze()) {
        Ok(Decoded::Request { api: got, .. }) => assert_eq!(got, api),
        other => panic!("seed {api:?} v{version} does not decode: {other:?}"),
    }
    let mut out = (buf.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&buf);
    out
}

fn write_txn_markers() -> Vec<u8> {
    let marker = |pid: i64, commit: bool| {
        WritableTxnMarker::default()
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(2)
            .with_transaction_result(commit)
            .with_coordinator_epoch(5)
            .with_topics(vec![WritableTxnMarkerTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("events")))
                .with_partition_indexes(vec![0, 1, 2])])
    };
    let body = WriteTxnMarkersRequest::default().with_markers(vec![marker(7, true), marker(8, false)]);
    frame(ApiKey::WriteTxnMarkers, 1, 4, &RequestKind::WriteTxnMarkers(body))
}

fn api_versions(version: i16) -> Vec<u8> {
    let body = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("sluice-fuzz"))
        .with_client_software_version(StrBytes::from_static_str("0.1.0"));
    frame(ApiKey::ApiVersions, version, 1, &RequestKind::ApiVersions(body))
}

fn metadata(version: i16, topics: Option<&[&'static str]>) -> Vec<u8> {
    let topics = topics.map(|names| {
        names
            .iter()
            .map(|n| MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_static_str(n)))))
            .collect()
    });
    let body = MetadataRequest::default().with_topics(topics).with_allow_auto_topic_creation(true);
    frame(ApiKey::Metadata, version, 2, &RequestKind::Metadata(body))
}

fn produce(version: i16, partitions: Vec<(i32, Vec<u8>)>) -> Vec<u8> {
    let partition_data = partitions
        .into_iter()
        .map(|(index, records)| {
            PartitionProduceData::default().with_index(index).with_records(Some(Bytes::from(records)))
        })
        .collect();
    let topic = TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_static_str("events")))
        .with_partition_data(partition_data);
    let body = ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![topic]);
    frame(ApiKey::Produce, version, 3, &RequestKind::Produce(body))
}

/// A batch with keys, a null value and record headers.
fn rich_batch(base_offset: i64) -> Vec<u8> {
    let headers: &[(&[u8], Option<&[u8]>)] = &[(b"trace-id", Some(b"abc123")), (b"null-header", None)];
    build_batch(
        base_offset,
        &[
            (Some(b"key-0"), Some(b"value-0"), &[]),
            (None, Some(b"value-1 without a key"), headers),
            (Some(b"tombstone"), None, &[]),
        ],
        1_700_000_000_000,
    )
}

/// `batch` with its attributes replaced and the CRC recomputed.
fn with_attributes(mut batch: Vec<u8>, attributes: i16) -> Vec<u8> {
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = compute_crc(&batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let requests = root.join("request_decode");
    let batches = root.join("batch_validate");
    for dir in [&requests, &batches] {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("create seed dir");
    }

    let one = build_batch(0, &[(None, Some(b"hello"), &[])], 1_700_000_000_000);
    let rich = rich_batch(0);
    let many = build_batch_of_size(0, 20, 30, 1_700_000_000_000);
    let empty = build_batch(5, &[], 1_700_000_000_000); // as compaction leaves it: stored only
    let gzip = with_attributes(build_batch_of_size(0, 2, 10, 0), 1); // payload not really gzip
    let transactional = with_attributes(one.clone(), 0x10);
    for (batch, client_ok) in
        [(&one, true), (&rich, true), (&many, true), (&empty, false), (&gzip, true), (&transactional, true)]
    {
        assert!(validate_stored(batch).is_ok());
        assert_eq!(validate_from_client(batch).is_ok(), client_ok);
    }

    // Requests: each file is a stream of `size ++ frame` units, like a socket's bytes.
    write(&requests, "api_versions_v3", &api_versions(3));
    write(&requests, "api_versions_v0", &api_versions(0));
    write(&requests, "metadata_v12_all", &metadata(12, None));
    write(&requests, "metadata_v12_topics", &metadata(12, Some(&["events", "orders"])));
    write(&requests, "metadata_v1_topics", &metadata(1, Some(&["events"])));
    write(&requests, "produce_v9_one_record", &produce(9, vec![(0, one.clone())]));
    write(&requests, "produce_v9_rich", &produce(9, vec![(0, rich.clone()), (1, many.clone())]));
    let mut two_batches = one.clone();
    two_batches.extend_from_slice(&build_batch(1, &[(Some(b"k"), Some(b"v"), &[])], 1_700_000_000_001));
    write(&requests, "produce_v9_two_batches", &produce(9, vec![(2, two_batches)]));
    write(&requests, "produce_v3_gzip_flag", &produce(3, vec![(0, gzip.clone())]));
    write(&requests, "produce_v11_transactional", &produce(11, vec![(0, transactional.clone())]));
    write(&requests, "write_txn_markers_v1", &write_txn_markers());
    let mut pipeline = api_versions(3);
    pipeline.extend_from_slice(&metadata(12, Some(&["events"])));
    pipeline.extend_from_slice(&produce(9, vec![(0, one.clone())]));
    write(&requests, "pipeline_apiversions_metadata_produce", &pipeline);
    // An ApiVersions version above the supported range: answered with KIP-511's v0 reply.
    let mut unsupported = api_versions(3);
    unsupported[6..8].copy_from_slice(&99i16.to_be_bytes());
    write(&requests, "api_versions_v99_fallback", &unsupported);

    // Batches: single batches, a run of them as a segment holds them, and a torn tail.
    write(&batches, "one_record", &one);
    write(&batches, "rich", &rich);
    write(&batches, "twenty_records", &many);
    write(&batches, "empty_compacted", &empty);
    write(&batches, "gzip_flag", &gzip);
    write(&batches, "transactional", &transactional);
    // A transaction as a segment holds it: a transactional batch, then its abort marker.
    let marker = EndTxnMarker { commit: false, coordinator_epoch: 3 };
    let mut txn_segment = transactional.clone();
    txn_segment.extend_from_slice(&encode_marker_batch(1, 7, 0, marker, 1_700_000_000_001));
    assert!(validate_stored(&txn_segment[transactional.len()..]).is_ok());
    write(&batches, "segment_aborted_transaction", &txn_segment);
    let mut segment = Vec::new();
    let mut next = 0i64;
    for count in [1usize, 3, 2] {
        let batch = build_batch_of_size(next, count, 8, 1_700_000_000_000 + next);
        next += count as i64;
        segment.extend_from_slice(&batch);
    }
    write(&batches, "segment_three_batches", &segment);
    let mut torn = segment.clone();
    torn.extend_from_slice(&rich_batch(next)[..BATCH_HEADER_LEN + 5]);
    write(&batches, "segment_torn_tail", &torn);
    let mut padded = segment;
    padded.extend_from_slice(&[0u8; 96]);
    write(&batches, "segment_zero_padding", &padded);

    for dir in [&requests, &batches] {
        let n = std::fs::read_dir(dir).unwrap().count();
        println!("{}: {n} seeds", dir.display());
    }
}
