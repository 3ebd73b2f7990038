use super::*;

#[test]
fn mmq_serves_wide_batches_of_k_quants_in_whole_tiles() {
    assert_eq!(mmq_kernel(QType::Q4K, 1, 32, &[4096, 1024, 1024]), Some(("rbee_mmq_q4_k_w1_c32".into(), 32)));
    assert_eq!(mmq_kernel(QType::Q6K, 1, 16, &[128256]), Some(("rbee_mmq_q6_k_w1_c16".into(), 16)));
    assert_eq!(mmq_kernel(QType::Q4K, 2, 32, &[4096]), Some(("rbee_mmq_q4_k_w2_c16".into(), 16)));
    // The mat-vec kernels keep: 8 rows or fewer, 32-value types, 4 warps a row, a ragged segment.
    assert_eq!(mmq_kernel(QType::Q4K, 1, 8, &[4096]), None);
    assert_eq!(mmq_kernel(QType::Q8_0, 1, 32, &[4096]), None);
    assert_eq!(mmq_kernel(QType::Q5K, 4, 32, &[1024]), None);
    assert_eq!(mmq_kernel(QType::Q6K, 1, 32, &[262_145]), None);
}

fn q4k_m_v_type(layer: usize, layers: usize) -> QType {
    // llama-quantize's Q4_K_M: more bits for attn_v in the first and last eighth and every third layer.
    if layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2 {
        QType::Q6K
    } else {
        QType::Q4K
    }
}

#[test]
fn an_8b_q4_k_m_step_has_the_harness_kernel_count() {
    let launches: Vec<usize> = (0..32).map(|l| qkv_launches([QType::Q4K, QType::Q4K, q4k_m_v_type(l, 32)]).len()).collect();
    assert_eq!(launches.iter().filter(|&&n| n == 2).count(), 16);
    assert_eq!(kernels_per_step(&launches), 1 + 32 * 9 + 16 + 3);
}

#[test]
fn buckets_cover_the_slots_up_to_32() {
    assert_eq!(batch_buckets(1), vec![1, 2, 4, 8]);
    assert_eq!(batch_buckets(4), vec![1, 2, 4, 8]);
    assert_eq!(batch_buckets(9), vec![1, 2, 4, 8, 16]);
    assert_eq!(batch_buckets(32), vec![1, 2, 4, 8, 16, 32]);
    assert_eq!(batch_buckets(100), vec![1, 2, 4, 8, 16, 32]);
}

#[test]
fn qkv_groups_runs_of_one_type() {
    assert_eq!(qkv_launches([QType::Q4K; 3]), vec![(0, 3)]);
    assert_eq!(qkv_launches([QType::Q4K, QType::Q4K, QType::Q6K]), vec![(0, 2), (2, 1)]);
    assert_eq!(qkv_launches([QType::Q8_0, QType::Q4K, QType::Q4K]), vec![(0, 1), (1, 2)]);
    assert_eq!(qkv_launches([QType::Q5_0, QType::Q8_0, QType::Q5_0]), vec![(0, 1), (1, 1), (2, 1)]);
}

#[test]
fn weight_rows_are_whole_blocks_and_k_quant_rows_16_byte_aligned() {
    // The kernels read Q4_K/Q5_K rows with 16-byte loads: each row of a tensor uploaded as
    // one allocation (256-byte aligned) must start on a 16-byte boundary.
    for (t, k) in [(GgmlDType::Q4K, 4096), (GgmlDType::Q5K, 14336), (GgmlDType::Q4K, 1536)] {
        let shape = MatShape::new("w", t, &[8, k]).unwrap();
        assert_eq!(shape.row_bytes() % 16, 0, "{t:?} k={k}");
    }
    assert_eq!(MatShape::new("w", GgmlDType::Q6K, &[128256, 4096]).unwrap().bytes(), 128256 * 16 * 210);
    assert_eq!(MatShape::new("w", GgmlDType::Q8_0, &[2, 64]).unwrap().row_bytes(), 68);
}

#[test]
fn a_type_without_a_kernel_is_named_in_the_error() {
    let error = MatShape::new("blk.0.attn_q.weight", GgmlDType::Q3K, &[4096, 4096]).unwrap_err();
    assert_eq!(error.code, ErrorCode::UnsupportedQuantization);
    assert!(error.message.contains("blk.0.attn_q.weight") && error.message.contains("Q3K"), "{}", error.message);
    let error = MatShape::new("output.weight", GgmlDType::F16, &[32000, 4096]).unwrap_err();
    assert!(error.message.contains("F16"), "{}", error.message);
    assert!(MatShape::new("w", GgmlDType::Q4K, &[8, 100]).is_err(), "a row that is not whole blocks");
}

#[test]
fn warps_per_row_and_grids_follow_the_harness() {
    let sms = 132;
    let q = MatShape::new("q", GgmlDType::Q4K, &[6144, 4096]).unwrap();
    // 6144 rows * 1 < 132 * 32 = 4224 is false: one warp a row.
    assert_eq!(warps_per_row(&q, 6144, sms), 1);
    let o = MatShape::new("o", GgmlDType::Q4K, &[4096, 4096]).unwrap();
    assert_eq!(warps_per_row(&o, 4096, sms), 2);
    assert_eq!(mmvq_grid(4096, 2), 2048);
    let head = MatShape::new("output", GgmlDType::Q6K, &[128256, 4096]).unwrap();
    let wpr = warps_per_row(&head, 128256, sms);
    assert_eq!(wpr, 1);
    assert_eq!(head_grid(128256, wpr, sms), 4 * 132 * 8);
    assert_eq!(head_grid(1000, 4, sms), 1000);
}

#[test]
fn buffers_for_an_8b_shape() {
    let cfg = test_config();
    let sizes = BufferSizes::new(&cfg, 14336, 1, 16, 132);
    assert_eq!(sizes.qkv, (32 + 16) * 128);
    assert_eq!(sizes.hds, 14336 / 32);
    assert_eq!(sizes.part_o, 32 * 16 * 128);
    assert_eq!(BufferSizes::new(&cfg, 14336, 8, 16, 132).logits, 8 * 128256);
    // The KV cache of the VRAM row: 8192 positions, one slot, f16.
    assert_eq!(kv_cache_bytes(&cfg, 8192, 1), 1 << 30);
    assert!(check_config(&cfg).is_ok());
    let mut wide_group = cfg.clone();
    wide_group.n_head_kv = 2;
    assert!(check_config(&wide_group).is_err());
}

pub(super) fn test_config() -> Config {
    use crate::model::config::{Activation, Arch};
    Config {
        arch: Arch::Llama,
        n_layer: 32,
        n_embd: 4096,
        n_head: 32,
        n_head_kv: 8,
        head_dim: 128,
        n_vocab: 128256,
        n_rot: 128,
        eps: 1e-5,
        rope_base: 500000.0,
        rope_freq_scale: 1.0,
        rope_base_swa: 10000.0,
        rope_neox: false,
        swa_window: None,
        swa_layers: vec![false; 32],
        kq_scale: 1.0 / 128f32.sqrt(),
        q_scale: None,
        embed_scale: None,
        final_logit_softcap: None,
        activation: Activation::Silu,
        train_context: 8192,
    }
}

#[test]
fn tp_layout_pieces_are_aligned_and_apart() {
    let layout = TpLayout { rows: 32, n_embd: 4096, vocab_ld: 64128 };
    let pieces = [TpLayout::COUNTER, TpLayout::ERROR, layout.part(0), layout.part(1), layout.logits(), layout.best_val(), layout.best_idx()];
    assert_eq!(layout.part(2), layout.part(0), "parts alternate by exchange parity");
    assert_eq!(layout.part(1) - layout.part(0), 4 * 32 * 4096);
    assert_eq!(layout.best_val() - layout.logits(), (4 * 32 * 64128usize).next_multiple_of(256));
    for pair in pieces[2..].windows(2) {
        assert!(pair[0] < pair[1]);
        assert_eq!(pair[1] % 256, 0);
    }
    assert!(layout.bytes() >= layout.best_idx() + 4 * 32);
    assert_eq!(tp_exchanges(32), 65);
}

#[test]
fn a_rank_holds_whole_heads_rows_and_block_columns() {
    let plan = ShardPlan { rank: 1, world: 2, heads: 16..32, kv_heads: 4..8, ff: 7168..14336, vocab: 64128..128256 };
    let part = |name: &str| Part::of(name, Some(&plan), 128);
    assert_eq!(part("blk.3.attn_q.weight"), Part::Rows(2048..4096));
    assert_eq!(part("blk.3.attn_k.weight"), Part::Rows(512..1024));
    assert_eq!(part("blk.3.attn_v.bias"), Part::Rows(512..1024));
    assert_eq!(part("blk.3.attn_output.weight"), Part::Cols(2048..4096));
    assert_eq!(part("blk.3.ffn_up.weight"), Part::Rows(7168..14336));
    assert_eq!(part("blk.3.ffn_down.weight"), Part::Cols(7168..14336));
    assert_eq!(part("output.weight"), Part::Rows(64128..128256));
    for whole in ["token_embd.weight", "output_norm.weight", "blk.3.attn_q_norm.weight", "blk.3.ffn_norm.weight"] {
        assert_eq!(part(whole), Part::All, "{whole}");
    }
    assert_eq!(Part::of("blk.3.attn_q.weight", None, 128), Part::All, "alone: everything");
}

#[test]
fn a_part_reads_only_its_bytes_and_cuts_what_it_reads() {
    // 3 rows of 512 Q4_K values: 2 blocks of 144 bytes a row, each byte its own offset mod 251.
    let full = MatShape { qtype: QType::Q4K, rows: 3, k: 512 };
    let data: Vec<u8> = (0..full.bytes()).map(|i| (i % 251) as u8).collect();
    let cols = Part::Cols(256..512);
    assert_eq!(cols.runs("w", full).unwrap(), vec![(144, 144), (432, 144), (720, 144)]);
    assert_eq!(cols.shape(full), MatShape { qtype: QType::Q4K, rows: 3, k: 256 });
    let cut = cols.of_blocks("w", full, &data).unwrap();
    assert_eq!(cut.len(), 3 * 144);
    assert_eq!(&cut[144..288], &data[432..576], "row 1's second block");
    let rows = Part::Rows(1..3);
    assert_eq!(rows.runs("w", full).unwrap(), vec![(288, 576)]);
    assert_eq!(rows.of_blocks("w", full, &data).unwrap(), data[288..].to_vec());
    assert_eq!(Part::All.runs("w", full).unwrap(), vec![(0, full.bytes())]);
    // Not whole blocks, or past the matrix: refused, naming the tensor.
    assert!(Part::Cols(128..512).runs("blk.0.ffn_down.weight", full).unwrap_err().message.contains("blk.0.ffn_down.weight"));
    assert!(Part::Rows(2..4).runs("w", full).is_err());
    assert_eq!(Part::Rows(1..3).of_vector("b", vec![1.0, 2.0, 3.0]).unwrap(), vec![2.0, 3.0]);
    assert!(Part::Rows(1..4).of_vector("b", vec![1.0, 2.0, 3.0]).is_err());
}
