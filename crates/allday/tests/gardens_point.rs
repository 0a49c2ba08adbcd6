//! Real photographs: the Gardens Point Walking set (200 places, day left/right, night right).
//!
//! The data is read from `../shared/data/gardens_point` beside the repository, or from the
//! folder in `ALLDAY_GARDENS_POINT`.

use std::path::PathBuf;

use allday::backend::default_device;
use allday::config::PlaceRange;
use allday::data::LoadOptions;
use allday::evaluation::GroundTruth;
use allday::evaluation::run::{EvaluationSets, evaluate_pixels};

fn gardens_point() -> PathBuf {
    let root = std::env::var_os("ALLDAY_GARDENS_POINT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/gardens_point")
        });
    assert!(
        root.join("night_right").is_dir(),
        "Gardens Point not found at {}; set ALLDAY_GARDENS_POINT to the folder holding day_left, day_right and night_right",
        root.display()
    );
    root
}

const PLACES: PlaceRange = PlaceRange {
    start: 100,
    end: 200,
};

/// The raw-pixel baseline on places 100–199 with ±2 frames lands on the published reference
/// figures (R@1 18 against day_right, 12 against day_left) within two points.
#[test]
fn pixel_baseline_matches_reference_figures() {
    let root = gardens_point();
    let device = default_device();
    let truth = GroundTruth::Frames { tolerance: 2 };
    for (database, expected_r1) in [("day_right", 18.0), ("day_left", 12.0)] {
        let sets = EvaluationSets::load(
            &root.join(database),
            &root.join("night_right"),
            PLACES,
            16,
            12,
            LoadOptions::default(),
        )
        .unwrap();
        let result = evaluate_pixels(&sets, &truth, 0.1, &device).unwrap();
        let metrics = &result.metrics;
        assert_eq!((metrics.queries, metrics.database), (100, 100));
        let r1 = metrics.recall_at(1).unwrap();
        assert!(
            (r1 - expected_r1).abs() <= 2.0,
            "{database}: R@1 {r1}, expected {expected_r1} ± 2"
        );
        assert!(metrics.pr_auc <= r1 / 100.0);
    }
}

/// Night photographs are grey (R = G = B) and become three equal channels; day photographs
/// are colour.
#[test]
fn night_images_load_as_three_equal_channels() {
    let root = gardens_point();
    let sets = EvaluationSets::load(
        &root.join("day_right"),
        &root.join("night_right"),
        PlaceRange { start: 0, end: 2 },
        64,
        48,
        LoadOptions::default(),
    )
    .unwrap();
    let plane = 64 * 48;
    let night = sets.queries.image(0);
    assert_eq!(night.len(), 3 * plane);
    assert_eq!(&night[..plane], &night[plane..2 * plane]);
    assert_eq!(&night[..plane], &night[2 * plane..]);
    let day = sets.database.image(0);
    assert_ne!(&day[..plane], &day[plane..2 * plane]);
}
