//! The simulated cycler: turns an [`AgingModel`] into raw per-cycle series.
//!
//! Each cycle: CC charge at `+I_ch` until the terminal voltage `OCV + I R` reaches the upper
//! limit, CV at the upper limit with exponentially decaying current down to C/20, a short
//! rest, then CC discharge at `-I_dis` until `OCV - I R` reaches the lower limit.

use rand::Rng;
use rand_distr::StandardNormal;

use super::aging::{charge_cv_soc, discharge_end_soc, resistance_shape, AgingModel, CellSpec};
use crate::data::Cycle;

/// Voltage measurement noise (standard deviation at noise scale 1), V.
const SIGMA_V: f64 = 0.2e-3;
/// Relative current measurement noise.
const SIGMA_I_REL: f64 = 2e-4;
/// Absolute current noise at rest, A.
const SIGMA_I_ABS: f64 = 2e-4;
/// Temperature sensor noise, K.
const SIGMA_T: f64 = 0.05;
/// Cycle-to-cycle relative jitter of the capacity and of the resistance.
const JITTER_Q: f64 = 3e-4;
const JITTER_R: f64 = 3e-3;
/// CV cut-off current, C.
const CV_CUTOFF_C: f64 = 0.05;
/// Rest after charge, s.
const REST_S: f64 = 600.0;
/// Thermal resistance to ambient, K/W, and thermal time constant, s.
const THERMAL_R: f64 = 8.0;
const THERMAL_TAU: f64 = 600.0;
/// Coulombic inefficiency not tied to capacity fade (electrolyte oxidation, shuttles).
const BASE_INEFFICIENCY: f64 = 2e-4;

/// Sample budget of one cycle.
struct Budget {
    cc: usize,
    cv: usize,
    rest: usize,
    discharge: usize,
}

impl Budget {
    fn new(points: usize) -> Self {
        let rest = (points / 40).max(2);
        let cc = points * 3 / 10;
        let cv = points * 3 / 20;
        Budget {
            cc,
            cv,
            rest,
            discharge: points - rest - cc - cv,
        }
    }
}

/// Series under construction, with noise and temperature tracking.
struct Recorder<'a, R: Rng + ?Sized> {
    cycle: Cycle,
    time: Vec<f64>,
    current: Vec<f64>,
    qc: Vec<f64>,
    qd: Vec<f64>,
    temp: Vec<f64>,
    ambient: f64,
    cell_temp: f64,
    last_t: f64,
    noise: f64,
    rng: &'a mut R,
}

impl<R: Rng + ?Sized> Recorder<'_, R> {
    fn gauss(&mut self) -> f64 {
        if self.noise > 0.0 {
            self.rng.sample::<f64, _>(StandardNormal) * self.noise
        } else {
            0.0
        }
    }

    /// One sample; `heat_w` is the Joule heat at this point.
    fn push(&mut self, t: f64, v: f64, i: f64, qc: f64, qd: f64, heat_w: f64) {
        let dt = (t - self.last_t).max(0.0);
        let a = (-dt / THERMAL_TAU).exp();
        self.cell_temp =
            self.ambient + (self.cell_temp - self.ambient) * a + THERMAL_R * heat_w * (1.0 - a);
        self.last_t = t;
        let nv = self.gauss();
        let ni = self.gauss();
        let nt = self.gauss();
        self.cycle.voltage_v.push(v + SIGMA_V * nv);
        self.time.push(t);
        let i_noise = if i == 0.0 {
            SIGMA_I_ABS
        } else {
            SIGMA_I_REL * i.abs()
        };
        self.current.push(i + i_noise * ni);
        self.qc.push(qc);
        self.qd.push(qd);
        self.temp.push(self.cell_temp + SIGMA_T * nt);
    }

    fn finish(mut self) -> Cycle {
        // capacity counters only count up: remove last-bit rounding falls between phases
        for q in [&mut self.qc, &mut self.qd] {
            let mut top = 0.0_f64;
            for v in q.iter_mut() {
                top = top.max(*v);
                *v = top;
            }
        }
        self.cycle.time_s = Some(self.time);
        self.cycle.current_a = Some(self.current);
        self.cycle.charge_capacity_ah = Some(self.qc);
        self.cycle.discharge_capacity_ah = Some(self.qd);
        self.cycle.temperature_c = Some(self.temp);
        self.cycle
    }
}

/// Simulate recorded cycle `n` (1-based) of the cell.
pub(crate) fn simulate_cycle<R: Rng + ?Sized>(
    model: &AgingModel,
    spec: &CellSpec,
    n: u32,
    rng: &mut R,
) -> Cycle {
    let chem = spec.chemistry;
    let p = chem.params();
    let nominal = model.nominal_capacity_ah;
    let noise = spec.noise;
    let nf = f64::from(n);
    // cycle-to-cycle jitter of the latent state
    let jq = rng.sample::<f64, _>(StandardNormal) * noise;
    let jr = rng.sample::<f64, _>(StandardNormal) * noise;
    let capacity = model.capacity_ah(nf) * (1.0 + JITTER_Q * jq);
    let r_ohm = model.resistance_ohm(nf) * (1.0 + JITTER_R * jr);
    let inefficiency = (model.fade(nf) - model.fade(nf - 1.0)).max(0.0) + BASE_INEFFICIENCY;
    let i_ch = spec.charge_c_rate * nominal;
    let i_dis = spec.discharge_c_rate * nominal;
    let i_cut = CV_CUTOFF_C * nominal;

    let budget = Budget::new(spec.points_per_cycle);
    let points = spec.points_per_cycle;
    let mut rec = Recorder {
        cycle: Cycle::new(n, Vec::with_capacity(points)),
        time: Vec::with_capacity(points),
        current: Vec::with_capacity(points),
        qc: Vec::with_capacity(points),
        qd: Vec::with_capacity(points),
        temp: Vec::with_capacity(points),
        ambient: spec.temperature_c,
        cell_temp: spec.temperature_c,
        last_t: 0.0,
        noise,
        rng,
    };

    // the cycle starts where the previous discharge stopped
    let s_start = discharge_end_soc(chem, i_dis, r_ohm);
    let s_cc = charge_cv_soc(chem, i_ch, r_ohm, s_start);
    let charge_scale = capacity * (1.0 + inefficiency);

    // CC charge
    for k in 0..budget.cc {
        let s = s_start + (s_cc - s_start) * k as f64 / (budget.cc - 1) as f64;
        let r = r_ohm * resistance_shape(s);
        let qc = (s - s_start) * charge_scale;
        let v = (chem.ocv(s) + i_ch * r).min(p.v_max);
        rec.push(qc * 3600.0 / i_ch, v, i_ch, qc, 0.0, i_ch * i_ch * r);
    }
    let t_cc = (s_cc - s_start) * charge_scale * 3600.0 / i_ch;
    let qc_cc = (s_cc - s_start) * charge_scale;

    // CV: I(t) = I_ch exp(-t / tau), fills the remaining capacity exactly at the cut-off
    let q_rem_as = (1.0 - s_cc) * charge_scale * 3600.0;
    let tau = (q_rem_as / (i_ch - i_cut)).max(1.0);
    let t_cut = tau * (i_ch / i_cut).ln();
    for k in 1..=budget.cv {
        let t = t_cut * k as f64 / budget.cv as f64;
        let decay = (-t / tau).exp();
        let i = i_ch * decay;
        let qc = qc_cc + i_ch * tau * (1.0 - decay) / 3600.0;
        rec.push(
            t_cc + t,
            p.v_max,
            i,
            qc,
            0.0,
            i * i * r_ohm * resistance_shape(1.0),
        );
    }
    let t_charge = t_cc + t_cut;
    let qc_end = qc_cc + (i_ch - i_cut) * tau / 3600.0;

    // rest: the voltage relaxes towards the OCV of the full cell
    let v_full = chem.ocv(1.0);
    for k in 1..=budget.rest {
        let t = REST_S * k as f64 / budget.rest as f64;
        let v = v_full + (p.v_max - v_full) * (-t / 60.0).exp();
        rec.push(t_charge + t, v, 0.0, qc_end, 0.0, 0.0);
    }
    let t_rest = t_charge + REST_S;

    // CC discharge from full to the lower cut-off
    let s_end = s_start;
    for k in 0..budget.discharge {
        let s = 1.0 - (1.0 - s_end) * k as f64 / (budget.discharge - 1) as f64;
        let r = r_ohm * resistance_shape(s);
        let qd = (1.0 - s) * capacity;
        let v = (chem.ocv(s) - i_dis * r).max(p.v_min);
        rec.push(
            t_rest + qd * 3600.0 / i_dis,
            v,
            -i_dis,
            qc_end,
            qd,
            i_dis * i_dis * r,
        );
    }
    rec.finish()
}
