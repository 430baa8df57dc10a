//! The libsrtp 2 declarations and the safe `Session` wrapper, shared by the
//! `libsrtp-shim` crate (system libsrtp 2.5) and `perf/srtp-bench` (libsrtp built
//! against OpenSSL by `srtp2-sys`). The policy layout is the same in 2.3 and 2.5.

use std::os::raw::{c_int, c_uint, c_ulong, c_void};
use std::sync::Once;

use rtp_core::srtp::SrtpProfile;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CryptoPolicy {
    cipher_type: u32,
    cipher_key_len: c_int,
    auth_type: u32,
    auth_key_len: c_int,
    auth_tag_len: c_int,
    sec_serv: c_int,
}

#[repr(C)]
struct Policy {
    ssrc_type: c_int,
    ssrc_value: c_uint,
    rtp: CryptoPolicy,
    rtcp: CryptoPolicy,
    key: *mut u8,
    keys: *mut c_void,
    num_master_keys: c_ulong,
    deprecated_ekt: *mut c_void,
    window_size: c_ulong,
    allow_repeat_tx: c_int,
    enc_xtn_hdr: *mut c_int,
    enc_xtn_hdr_count: c_int,
    next: *mut Policy,
}

extern "C" {
    fn srtp_init() -> c_int;
    fn srtp_create(session: *mut *mut c_void, policy: *const Policy) -> c_int;
    fn srtp_dealloc(session: *mut c_void) -> c_int;
    fn srtp_protect(ctx: *mut c_void, hdr: *mut c_void, len: *mut c_int) -> c_int;
    fn srtp_unprotect(ctx: *mut c_void, hdr: *mut c_void, len: *mut c_int) -> c_int;
    fn srtp_protect_rtcp(ctx: *mut c_void, hdr: *mut c_void, len: *mut c_int) -> c_int;
    fn srtp_unprotect_rtcp(ctx: *mut c_void, hdr: *mut c_void, len: *mut c_int) -> c_int;
    fn srtp_crypto_policy_set_rtp_default(p: *mut CryptoPolicy);
    fn srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(p: *mut CryptoPolicy);
    fn srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80(p: *mut CryptoPolicy);
    fn srtp_crypto_policy_set_aes_cm_256_hmac_sha1_32(p: *mut CryptoPolicy);
    fn srtp_crypto_policy_set_aes_gcm_128_16_auth(p: *mut CryptoPolicy);
    fn srtp_crypto_policy_set_aes_gcm_256_16_auth(p: *mut CryptoPolicy);
    fn srtp_crypto_policy_set_null_cipher_hmac_sha1_80(p: *mut CryptoPolicy);
}

/// A libsrtp error status (`srtp_err_status_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LibsrtpError(pub i32);

/// libsrtp status codes the tests look at.
pub mod status {
    /// Authentication failure.
    pub const AUTH_FAIL: i32 = 7;
    /// Replayed packet.
    pub const REPLAY_FAIL: i32 = 9;
    /// Packet too old for the window.
    pub const REPLAY_OLD: i32 = 10;
}

/// One libsrtp session (one direction, any SSRC).
#[derive(Debug)]
pub struct Session {
    ctx: *mut c_void,
}

fn crypto_policies(p: SrtpProfile) -> (CryptoPolicy, CryptoPolicy) {
    let mut rtp = CryptoPolicy::default();
    let mut rtcp = CryptoPolicy::default();
    // SAFETY: the setters only write the fields of the struct they are given, which
    // has the C layout of srtp_crypto_policy_t.
    unsafe {
        match p {
            SrtpProfile::AesCm128HmacSha1_80 => {
                srtp_crypto_policy_set_rtp_default(&mut rtp);
                srtp_crypto_policy_set_rtp_default(&mut rtcp);
            }
            SrtpProfile::AesCm128HmacSha1_32 => {
                srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(&mut rtp);
                srtp_crypto_policy_set_rtp_default(&mut rtcp);
            }
            SrtpProfile::AesCm256HmacSha1_80 => {
                srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80(&mut rtp);
                srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80(&mut rtcp);
            }
            SrtpProfile::AesCm256HmacSha1_32 => {
                srtp_crypto_policy_set_aes_cm_256_hmac_sha1_32(&mut rtp);
                srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80(&mut rtcp);
            }
            SrtpProfile::AeadAes128Gcm => {
                srtp_crypto_policy_set_aes_gcm_128_16_auth(&mut rtp);
                srtp_crypto_policy_set_aes_gcm_128_16_auth(&mut rtcp);
            }
            SrtpProfile::AeadAes256Gcm => {
                srtp_crypto_policy_set_aes_gcm_256_16_auth(&mut rtp);
                srtp_crypto_policy_set_aes_gcm_256_16_auth(&mut rtcp);
            }
            SrtpProfile::NullHmacSha1_80 | SrtpProfile::NullHmacSha1_32 => {
                srtp_crypto_policy_set_null_cipher_hmac_sha1_80(&mut rtp);
                srtp_crypto_policy_set_null_cipher_hmac_sha1_80(&mut rtcp);
                if p == SrtpProfile::NullHmacSha1_32 {
                    rtp.auth_tag_len = 4;
                }
            }
        }
    }
    (rtp, rtcp)
}

/// Policy options beyond the profile, key and direction.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// SRTCP authenticated only (`sec_serv_auth`): sent with E = 0, in clear.
    pub rtcp_auth_only: bool,
    /// libsrtp's `allow_repeat_tx`.
    pub allow_repeat_tx: bool,
}

impl Session {
    /// A session for `profile` with master key||salt, outbound (protect) or inbound
    /// (unprotect), with a replay window of `window` packets.
    pub fn new(
        profile: SrtpProfile,
        key_salt: &[u8],
        outbound: bool,
        window: u32,
    ) -> Result<Self, LibsrtpError> {
        Self::with_options(profile, key_salt, outbound, window, Options::default())
    }

    /// [`Session::new`] with [`Options`].
    pub fn with_options(
        profile: SrtpProfile,
        key_salt: &[u8],
        outbound: bool,
        window: u32,
        opts: Options,
    ) -> Result<Self, LibsrtpError> {
        static INIT: Once = Once::new();
        // SAFETY: srtp_init has no preconditions; Once runs it a single time.
        INIT.call_once(|| unsafe {
            srtp_init();
        });
        let (rtp, mut rtcp) = crypto_policies(profile);
        if opts.rtcp_auth_only {
            // sec_serv_auth.
            rtcp.sec_serv = 2;
        }
        let mut key = key_salt.to_vec();
        key.resize(64, 0);
        let policy = Policy {
            ssrc_type: if outbound { 3 } else { 2 },
            ssrc_value: 0,
            rtp,
            rtcp,
            key: key.as_mut_ptr(),
            keys: std::ptr::null_mut(),
            num_master_keys: 0,
            deprecated_ekt: std::ptr::null_mut(),
            window_size: c_ulong::from(window),
            allow_repeat_tx: c_int::from(opts.allow_repeat_tx),
            enc_xtn_hdr: std::ptr::null_mut(),
            enc_xtn_hdr_count: 0,
            next: std::ptr::null_mut(),
        };
        let mut ctx = std::ptr::null_mut();
        // SAFETY: policy is a valid srtp_policy_t whose key buffer outlives the call
        // (libsrtp copies the key); ctx receives a new session.
        let st = unsafe { srtp_create(&mut ctx, &policy) };
        if st != 0 {
            return Err(LibsrtpError(st));
        }
        Ok(Session { ctx })
    }

    fn call(
        &mut self,
        f: unsafe extern "C" fn(*mut c_void, *mut c_void, *mut c_int) -> c_int,
        buf: &mut [u8],
        len: usize,
        room: usize,
    ) -> Result<usize, LibsrtpError> {
        if buf.len() < len + room {
            return Err(LibsrtpError(-1));
        }
        let mut l = c_int::try_from(len).map_err(|_| LibsrtpError(-1))?;
        // SAFETY: buf holds len bytes of packet plus `room` bytes of tailroom, enough
        // for libsrtp's largest trailer (tag + MKI + SRTCP index); ctx is live.
        let st = unsafe { f(self.ctx, buf.as_mut_ptr().cast(), &mut l) };
        if st != 0 {
            return Err(LibsrtpError(st));
        }
        usize::try_from(l).map_err(|_| LibsrtpError(-1))
    }

    /// srtp_protect on `buf[..len]`; returns the new length.
    pub fn protect(&mut self, buf: &mut [u8], len: usize) -> Result<usize, LibsrtpError> {
        self.call(srtp_protect, buf, len, 32)
    }
    /// srtp_unprotect on the whole `buf`; returns the plaintext length.
    pub fn unprotect(&mut self, buf: &mut [u8]) -> Result<usize, LibsrtpError> {
        let n = buf.len();
        self.call(srtp_unprotect, buf, n, 0)
    }
    /// srtp_protect_rtcp on `buf[..len]`.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, LibsrtpError> {
        self.call(srtp_protect_rtcp, buf, len, 36)
    }
    /// srtp_unprotect_rtcp on the whole `buf`.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8]) -> Result<usize, LibsrtpError> {
        let n = buf.len();
        self.call(srtp_unprotect_rtcp, buf, n, 0)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: ctx came from srtp_create and is freed exactly once.
        unsafe {
            srtp_dealloc(self.ctx);
        }
    }
}
