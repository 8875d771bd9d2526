//! Curve smoothing: an exponential moving average with the bias correction of Adam (Kingma
//! & Ba, 2015), so the first points are not pulled towards zero.

/// The smoothed series: `m_t = w m_{t-1} + (1 - w) x_t`, reported as `m_t / (1 - w^t)`.
/// `weight` 0 returns the values; non-finite values are skipped (their place keeps the
/// previous smoothed value).
pub fn ema(values: &[f64], weight: f64) -> Vec<f64> {
    let w = weight.clamp(0.0, 0.999);
    let mut m = 0.0;
    let mut correction = 1.0;
    let mut last = f64::NAN;
    values
        .iter()
        .map(|&x| {
            if x.is_finite() {
                m = w * m + (1.0 - w) * x;
                correction *= w;
                last = m / (1.0 - correction);
            }
            last
        })
        .collect()
}
