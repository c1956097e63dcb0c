//! Property test: any sequence of appends, rolls, clean/unclean restarts and truncations
//! reads back exactly like a simple in-memory model of the log.

mod support;

use proptest::prelude::*;
use sluice_engine::batch::validate_stored;
use sluice_engine::partition_log::ReadBound;
use support::*;

#[derive(Clone, Debug)]
enum Op {
    Append { count: usize, value_len: usize },
    Roll,
    Restart { clean: bool },
    Truncate { back: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1usize..6, 0usize..3000).prop_map(|(count, value_len)| Op::Append { count, value_len }),
        1 => Just(Op::Roll),
        1 => any::<bool>().prop_map(|clean| Op::Restart { clean }),
        1 => (0usize..4).prop_map(|back| Op::Truncate { back }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]
    #[test]
    fn appends_and_reads_match_the_model(ops in proptest::collection::vec(op(), 1..40), segment_kib in 4u64..64) {
        let dir = tempfile::tempdir().unwrap();
        let config = config_with(&[("segment.bytes", &(segment_kib * 1024).to_string()), ("index.interval.bytes", "700")]);
        // Model: the batches (base offset, record count, tag) in the log, in order.
        let mut model: Vec<(i64, usize, u64)> = Vec::new();
        let mut epoch_restarts = 0u64;
        let mut next_clean = true;
        let mut ops_iter = ops.into_iter().peekable();
        while ops_iter.peek().is_some() {
            let config = config.clone();
            let dir_path = dir.path().to_path_buf();
            // Each run is one process lifetime; a Restart op ends it.
            let (new_model, restart) = run(async {
                let mut model = model.clone();
                let log = open(&dir_path, config, small_writer_options(), next_clean).await;
                let mut restart = None;
                for op in ops_iter.by_ref() {
                    match op {
                        Op::Append { count, value_len } => {
                            let tag = model.len() as u64 + 1000 * epoch_restarts;
                            let info = log.append(&tagged_batch(tag, count, value_len, 1000), 0).await.unwrap();
                            let expected = model.last().map_or(0, |(b, c, _)| b + *c as i64);
                            assert_eq!(info.base_offset, expected);
                            model.push((info.base_offset, count, tag));
                        }
                        Op::Roll => log.roll().await.unwrap(),
                        Op::Truncate { back } => {
                            let keep = model.len().saturating_sub(back);
                            let to = model.get(keep).map_or(log.log_end_offset(), |(b, _, _)| *b);
                            log.truncate_to(to).await.unwrap();
                            model.truncate(keep);
                        }
                        Op::Restart { clean } => {
                            if clean {
                                log.close().await.unwrap();
                            } else {
                                log.flush().await.unwrap();
                            }
                            restart = Some(clean);
                            break;
                        }
                    }
                }
                // Check every offset of the model, and the whole log.
                let end = model.last().map_or(0, |(b, c, _)| b + *c as i64);
                assert_eq!(log.log_end_offset(), end);
                for (base, count, _) in &model {
                    for o in *base..*base + *count as i64 {
                        let r = log.read(o, 1 << 20, ReadBound::HighWatermark, true).await.unwrap();
                        assert_eq!(r.first_batch_offset, *base);
                    }
                }
                let all = read_all(&log, 0).await;
                assert_eq!(all.len(), model.len());
                for ((base, bytes), (mb, mc, _)) in all.iter().zip(&model) {
                    assert_eq!(base, mb);
                    assert_eq!(validate_stored(bytes).unwrap().records_count as usize, *mc);
                }
                if restart.is_none() {
                    log.close().await.unwrap();
                }
                (model, restart)
            });
            model = new_model;
            if let Some(clean) = restart {
                epoch_restarts += 1;
                next_clean = clean;
            }
        }
    }
}
