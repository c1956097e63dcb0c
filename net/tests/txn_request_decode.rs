//! Fuzz-style tests of the transaction requests' decoding (the path every request frame takes,
//! `connection::decode_request`): for every advertised version of AddPartitionsToTxn,
//! AddOffsetsToTxn, EndTxn, TxnOffsetCommit, DescribeTransactions, ListTransactions and
//! InitProducerId, a well-formed request decodes to its own kind, and every truncation and
//! thousands of random mutations of it, and random frames with its header, never panic. (The
//! libFuzzer target `fuzz/fuzz_targets/request_decode.rs` covers the same path open-endedly.)

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::add_partitions_to_txn_request::{AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction};
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, ApiKey, DescribeTransactionsRequest, EndTxnRequest, GroupId,
    InitProducerIdRequest, ListTransactionsRequest, ProducerId, RequestHeader, RequestKind, TopicName, TransactionalId,
    TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::{Encodable, HeaderVersion, Request, StrBytes};
use sluice_net::connection::{decode_request, Decoded};
use sluice_net::supported_apis::supported_range;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A frame (without the size prefix): request header and body at `version`.
fn frame<R: Request + HeaderVersion>(request: &R, version: i16) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(s("fuzz")));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, R::header_version(version)).unwrap();
    request.encode(&mut buf, version).unwrap();
    buf.freeze()
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The well-formed request decodes to `kind`; garbage derived from it never panics.
fn hammer(api: ApiKey, frames: Vec<(i16, Bytes)>, kind: fn(&RequestKind) -> bool) {
    let (min, max) = supported_range(api).expect("advertised");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ api as u64);
    for (version, valid) in frames {
        assert!((min..=max).contains(&version));
        match decode_request(valid.clone()) {
            Ok(Decoded::Request { request, version: v, .. }) => {
                assert_eq!(v, version);
                let request: &RequestKind = std::borrow::Borrow::borrow(&request);
                assert!(kind(request), "{api:?} v{version} decoded as another kind");
            }
            _ => panic!("{api:?} v{version}: a well-formed request did not decode"),
        }
        for len in 0..valid.len() {
            let _ = decode_request(valid.slice(..len));
        }
        for _ in 0..3_000 {
            let mut bytes = valid.to_vec();
            match rng.below(3) {
                0 => {
                    for _ in 0..=rng.below(4) {
                        let i = 8 + rng.below(bytes.len().saturating_sub(8));
                        if i < bytes.len() {
                            bytes[i] = rng.next() as u8;
                        }
                    }
                }
                1 => {
                    // Large counts and lengths where the codec reads them.
                    let i = 8 + rng.below(bytes.len().saturating_sub(8));
                    for b in bytes.iter_mut().skip(i).take(4) {
                        *b = 0x7f;
                    }
                }
                _ => {
                    bytes.truncate(4 + rng.below(bytes.len()));
                    let extra = rng.below(64);
                    for _ in 0..extra {
                        bytes.put_u8(rng.next() as u8);
                    }
                }
            }
            let _ = decode_request(Bytes::from(bytes));
        }
    }
}

fn versions(api: ApiKey) -> std::ops::RangeInclusive<i16> {
    let (min, max) = supported_range(api).unwrap();
    min..=max
}

#[test]
fn add_partitions_to_txn_v0_to_v5() {
    let topic = AddPartitionsToTxnTopic::default().with_name(TopicName(s("t"))).with_partitions(vec![0, 1, 2]);
    let frames = versions(ApiKey::AddPartitionsToTxn)
        .map(|v| {
            let r = if v <= 3 {
                AddPartitionsToTxnRequest::default()
                    .with_v3_and_below_transactional_id(TransactionalId(s("tx")))
                    .with_v3_and_below_producer_id(ProducerId(5))
                    .with_v3_and_below_producer_epoch(1)
                    .with_v3_and_below_topics(vec![topic.clone()])
            } else {
                AddPartitionsToTxnRequest::default().with_transactions(vec![AddPartitionsToTxnTransaction::default()
                    .with_transactional_id(TransactionalId(s("tx")))
                    .with_producer_id(ProducerId(5))
                    .with_producer_epoch(1)
                    .with_verify_only(true)
                    .with_topics(vec![topic.clone()])])
            };
            (v, frame(&r, v))
        })
        .collect();
    hammer(ApiKey::AddPartitionsToTxn, frames, |k| matches!(k, RequestKind::AddPartitionsToTxn(_)));
}

#[test]
fn add_offsets_end_txn_and_init_producer_id() {
    let frames = versions(ApiKey::AddOffsetsToTxn)
        .map(|v| {
            let r = AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(s("tx")))
                .with_producer_id(ProducerId(5))
                .with_producer_epoch(1)
                .with_group_id(GroupId(s("g")));
            (v, frame(&r, v))
        })
        .collect();
    hammer(ApiKey::AddOffsetsToTxn, frames, |k| matches!(k, RequestKind::AddOffsetsToTxn(_)));
    let frames = versions(ApiKey::EndTxn)
        .map(|v| {
            let r = EndTxnRequest::default()
                .with_transactional_id(TransactionalId(s("tx")))
                .with_producer_id(ProducerId(5))
                .with_producer_epoch(1)
                .with_committed(true);
            (v, frame(&r, v))
        })
        .collect();
    hammer(ApiKey::EndTxn, frames, |k| matches!(k, RequestKind::EndTxn(_)));
    let frames = versions(ApiKey::InitProducerId)
        .map(|v| {
            let r = InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(s("tx"))))
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1);
            (v, frame(&r, v))
        })
        .collect();
    hammer(ApiKey::InitProducerId, frames, |k| matches!(k, RequestKind::InitProducerId(_)));
}

#[test]
fn txn_offset_commit_v0_to_v5() {
    let frames = versions(ApiKey::TxnOffsetCommit)
        .map(|v| {
            let r = TxnOffsetCommitRequest::default()
                .with_transactional_id(TransactionalId(s("tx")))
                .with_group_id(GroupId(s("g")))
                .with_producer_id(ProducerId(5))
                .with_producer_epoch(1)
                .with_generation_id(if v >= 3 { 3 } else { -1 })
                .with_member_id(s(if v >= 3 { "m" } else { "" }))
                .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(42)
                        .with_committed_metadata(Some(s("meta")))])]);
            (v, frame(&r, v))
        })
        .collect();
    hammer(ApiKey::TxnOffsetCommit, frames, |k| matches!(k, RequestKind::TxnOffsetCommit(_)));
}

#[test]
fn describe_and_list_transactions() {
    let frames = versions(ApiKey::DescribeTransactions)
        .map(|v| {
            let r = DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![TransactionalId(s("a")), TransactionalId(s("b"))]);
            (v, frame(&r, v))
        })
        .collect();
    hammer(ApiKey::DescribeTransactions, frames, |k| matches!(k, RequestKind::DescribeTransactions(_)));
    let frames = versions(ApiKey::ListTransactions)
        .map(|v| {
            let r = ListTransactionsRequest::default()
                .with_state_filters(vec![s("Ongoing")])
                .with_producer_id_filters(vec![ProducerId(5)])
                .with_duration_filter(if v >= 1 { 1000 } else { -1 });
            (v, frame(&r, v))
        })
        .collect();
    hammer(ApiKey::ListTransactions, frames, |k| matches!(k, RequestKind::ListTransactions(_)));
}
