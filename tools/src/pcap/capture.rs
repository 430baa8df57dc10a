//! Reading pcap / pcapng captures frame by frame, and writing pcap files back (for
//! instance with each UDP payload replaced by its decrypted or encrypted form).
//!
//! ```no_run
//! use rtp_tools::pcap::capture::{CaptureReader, CaptureWriter};
//! let mut reader = CaptureReader::open("in.pcapng").unwrap();
//! let mut writer = None;
//! while let Some(frame) = reader.next_frame() {
//!     let frame = frame.unwrap();
//!     let w = writer.get_or_insert_with(|| CaptureWriter::create("out.pcap", frame.linktype).unwrap());
//!     match frame.udp() {
//!         Ok(udp) => {
//!             let new_payload = frame.data[udp.payload_range()].to_vec(); // transform here
//!             w.write_with_payload(&frame, &udp, &new_payload).unwrap();
//!         }
//!         Err(_) => w.write_frame(&frame).unwrap(),
//!     }
//! }
//! ```

use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::{Block, PcapNgReader, PcapNgWriter};
use pcap_file::{DataLink, Endianness, TsResolution};

use super::net::{self, NetError, UdpFrame};

/// One captured frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// 1-based frame number in the file (as Wireshark numbers them).
    pub number: u64,
    /// Capture time since the UNIX epoch.
    pub timestamp: Duration,
    /// The LINKTYPE_* value of the interface the frame was captured on.
    pub linktype: u32,
    /// The captured bytes, starting with the link-layer header.
    pub data: Vec<u8>,
    /// The length of the frame on the wire.
    pub orig_len: u32,
}

impl Frame {
    /// Parses the frame down to UDP: offsets of IP/UDP/payload and the endpoints.
    pub fn udp(&self) -> Result<UdpFrame, NetError> {
        net::parse_udp_frame(self.linktype, &self.data)
    }

    /// The UDP payload, if the frame is an unfragmented UDP datagram.
    pub fn udp_payload(&self) -> Option<(UdpFrame, &[u8])> {
        let u = self.udp().ok()?;
        let p = self.data.get(u.payload_range())?;
        Some((u, p))
    }
}

/// Why a capture could not be read or written.
#[derive(Debug)]
pub enum CaptureError {
    /// An I/O error.
    Io(std::io::Error),
    /// Not a pcap or pcapng file (bad magic number).
    UnknownFormat,
    /// The pcap-file crate rejected the file (or a frame in it).
    Format(String),
    /// A frame's link type differs from the one of the file being written.
    LinkTypeMismatch {
        /// The file's link type.
        file: u32,
        /// The frame's link type.
        frame: u32,
    },
    /// A frame could not be rebuilt.
    Net(NetError),
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureError::Io(e) => write!(f, "I/O error: {e}"),
            CaptureError::UnknownFormat => f.write_str("not a pcap or pcapng file"),
            CaptureError::Format(e) => write!(f, "capture format error: {e}"),
            CaptureError::LinkTypeMismatch { file, frame } => write!(
                f,
                "frame has link type {frame} but the output file has {file}"
            ),
            CaptureError::Net(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for CaptureError {}

impl From<std::io::Error> for CaptureError {
    fn from(e: std::io::Error) -> Self {
        CaptureError::Io(e)
    }
}

impl From<pcap_file::PcapError> for CaptureError {
    fn from(e: pcap_file::PcapError) -> Self {
        match e {
            pcap_file::PcapError::IoError(e) => CaptureError::Io(e),
            other => CaptureError::Format(other.to_string()),
        }
    }
}

impl From<NetError> for CaptureError {
    fn from(e: NetError) -> Self {
        CaptureError::Net(e)
    }
}

/// The container format of a capture file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureFormat {
    /// Classic libpcap format.
    Pcap,
    /// pcapng.
    PcapNg,
}

#[derive(Debug, Clone, Copy)]
struct Interface {
    linktype: u32,
    /// if_tsresol: bit 7 clear = 10^-n s, set = 2^-n s.
    tsresol: u8,
    tsoffset_secs: u64,
}

impl Interface {
    /// Converts a raw pcapng timestamp (in interface units) to a duration.
    fn timestamp(&self, raw: u64) -> Duration {
        let raw = u128::from(raw);
        let nanos = if self.tsresol & 0x80 == 0 {
            let e = u32::from(self.tsresol);
            if e <= 9 {
                raw * 10u128.pow(9 - e)
            } else {
                raw / 10u128.pow((e - 9).min(38))
            }
        } else {
            let b = u32::from(self.tsresol & 0x7f).min(127);
            (raw * 1_000_000_000) >> b
        };
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
        Duration::from_nanos(nanos)
            .checked_add(Duration::from_secs(self.tsoffset_secs))
            .unwrap_or(Duration::MAX)
    }
}

enum Inner<R: Read> {
    Pcap {
        reader: PcapReader<R>,
        linktype: u32,
    },
    PcapNg {
        reader: PcapNgReader<R>,
        interfaces: Vec<Interface>,
        last_ts: Duration,
    },
}

/// Reads frames from a pcap or pcapng stream, whichever it is.
pub struct CaptureReader<R: Read> {
    inner: Inner<R>,
    number: u64,
    done: bool,
    format: CaptureFormat,
}

impl<R: Read> fmt::Debug for CaptureReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureReader")
            .field("format", &self.format)
            .field("number", &self.number)
            .finish()
    }
}

impl CaptureReader<BufReader<File>> {
    /// Opens a capture file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CaptureError> {
        Self::new(BufReader::new(File::open(path)?))
    }
}

impl<R: BufRead> CaptureReader<R> {
    /// Reads a capture from a buffered stream, detecting pcap or pcapng by its magic.
    pub fn new(mut reader: R) -> Result<Self, CaptureError> {
        let head = reader.fill_buf()?;
        let magic: [u8; 4] = match head.get(..4) {
            Some(m) => [m[0], m[1], m[2], m[3]],
            None => return Err(CaptureError::UnknownFormat),
        };
        let be = u32::from_be_bytes(magic);
        let (inner, format) = match be {
            0x0a0d_0d0a => (
                Inner::PcapNg {
                    reader: PcapNgReader::new(reader)?,
                    interfaces: Vec::new(),
                    last_ts: Duration::ZERO,
                },
                CaptureFormat::PcapNg,
            ),
            0xa1b2_c3d4 | 0xa1b2_3c4d | 0xd4c3_b2a1 | 0x4d3c_b2a1 => {
                let r = PcapReader::new(reader)?;
                let linktype = u32::from(r.header().datalink);
                (
                    Inner::Pcap {
                        reader: r,
                        linktype,
                    },
                    CaptureFormat::Pcap,
                )
            }
            _ => return Err(CaptureError::UnknownFormat),
        };
        Ok(CaptureReader {
            inner,
            number: 0,
            done: false,
            format,
        })
    }
}

impl<R: Read> CaptureReader<R> {
    /// Whether the file is pcap or pcapng.
    pub fn format(&self) -> CaptureFormat {
        self.format
    }

    /// The link type of a classic pcap file (pcapng has one per interface).
    pub fn pcap_linktype(&self) -> Option<u32> {
        match &self.inner {
            Inner::Pcap { linktype, .. } => Some(*linktype),
            Inner::PcapNg { .. } => None,
        }
    }

    /// The next frame; `None` at the end. After an error (e.g. a file cut in the middle
    /// of a frame by a killed capture) the reader stops.
    pub fn next_frame(&mut self) -> Option<Result<Frame, CaptureError>> {
        if self.done {
            return None;
        }
        let r = self.read_one();
        match &r {
            None | Some(Err(_)) => self.done = true,
            Some(Ok(_)) => {}
        }
        r
    }

    fn read_one(&mut self) -> Option<Result<Frame, CaptureError>> {
        match &mut self.inner {
            Inner::Pcap { reader, linktype } => {
                let p = match reader.next_packet()? {
                    Ok(p) => p,
                    Err(e) => return Some(Err(e.into())),
                };
                self.number += 1;
                Some(Ok(Frame {
                    number: self.number,
                    timestamp: p.timestamp,
                    linktype: *linktype,
                    data: p.data.into_owned(),
                    orig_len: p.orig_len,
                }))
            }
            Inner::PcapNg {
                reader,
                interfaces,
                last_ts,
            } => loop {
                let block = match reader.next_block()? {
                    Ok(b) => b,
                    Err(e) => return Some(Err(e.into())),
                };
                let (iface, raw_ts, data, orig_len) = match block {
                    Block::SectionHeader(_) => {
                        interfaces.clear();
                        continue;
                    }
                    Block::InterfaceDescription(idb) => {
                        let mut i = Interface {
                            linktype: u32::from(idb.linktype),
                            tsresol: 6,
                            tsoffset_secs: 0,
                        };
                        for o in &idb.options {
                            match o {
                                InterfaceDescriptionOption::IfTsResol(r) => i.tsresol = *r,
                                InterfaceDescriptionOption::IfTsOffset(s) => i.tsoffset_secs = *s,
                                _ => {}
                            }
                        }
                        interfaces.push(i);
                        continue;
                    }
                    Block::EnhancedPacket(epb) => {
                        // pcap-file 2.0 stores the raw units as nanoseconds; undo that
                        // and apply the interface's if_tsresol ourselves.
                        let raw = u64::try_from(epb.timestamp.as_nanos()).unwrap_or(u64::MAX);
                        (
                            epb.interface_id as usize,
                            Some(raw),
                            epb.data.into_owned(),
                            epb.original_len,
                        )
                    }
                    Block::Packet(pb) => (
                        usize::from(pb.interface_id),
                        Some(pb.timestamp),
                        pb.data.into_owned(),
                        pb.original_len,
                    ),
                    Block::SimplePacket(spb) => {
                        // No timestamp; the data may include block padding.
                        let mut d = spb.data.into_owned();
                        d.truncate(spb.original_len as usize);
                        (0, None, d, spb.original_len)
                    }
                    _ => continue,
                };
                let Some(iface) = interfaces.get(iface).copied() else {
                    return Some(Err(CaptureError::Format(format!(
                        "packet refers to undeclared interface {iface}"
                    ))));
                };
                let ts = match raw_ts {
                    Some(raw) => iface.timestamp(raw),
                    None => *last_ts,
                };
                *last_ts = ts;
                self.number += 1;
                return Some(Ok(Frame {
                    number: self.number,
                    timestamp: ts,
                    linktype: iface.linktype,
                    data,
                    orig_len,
                }));
            },
        }
    }
}

impl<R: Read> Iterator for CaptureReader<R> {
    type Item = Result<Frame, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_frame()
    }
}

/// Largest frame the writer accepts (its pcap snap length).
pub const WRITER_SNAPLEN: u32 = 262_144;

enum Sink<W: Write> {
    Pcap {
        writer: PcapWriter<W>,
        linktype: u32,
    },
    PcapNg {
        writer: PcapNgWriter<W>,
        /// The link type of each interface declared so far (index = interface id).
        interfaces: Vec<u32>,
    },
}

/// Writes a classic pcap file (nanosecond timestamps, one link type) or a pcapng
/// file (one interface per link type, declared when its first frame is written).
pub struct CaptureWriter<W: Write> {
    sink: Sink<W>,
}

impl<W: Write> fmt::Debug for CaptureWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sink {
            Sink::Pcap { linktype, .. } => f
                .debug_struct("CaptureWriter")
                .field("format", &CaptureFormat::Pcap)
                .field("linktype", linktype)
                .finish(),
            Sink::PcapNg { interfaces, .. } => f
                .debug_struct("CaptureWriter")
                .field("format", &CaptureFormat::PcapNg)
                .field("interfaces", interfaces)
                .finish(),
        }
    }
}

impl CaptureWriter<BufWriter<File>> {
    /// Creates (truncates) a pcap file for frames of `linktype`.
    pub fn create(path: impl AsRef<Path>, linktype: u32) -> Result<Self, CaptureError> {
        Self::new(BufWriter::new(File::create(path)?), linktype)
    }

    /// Creates (truncates) a pcapng file, which takes frames of any link type.
    pub fn create_pcapng(path: impl AsRef<Path>) -> Result<Self, CaptureError> {
        Self::new_pcapng(BufWriter::new(File::create(path)?))
    }
}

impl<W: Write> CaptureWriter<W> {
    /// Writes the pcap header for `linktype` to `w`.
    pub fn new(w: W, linktype: u32) -> Result<Self, CaptureError> {
        let header = PcapHeader {
            version_major: 2,
            version_minor: 4,
            ts_correction: 0,
            ts_accuracy: 0,
            snaplen: WRITER_SNAPLEN,
            datalink: DataLink::from(linktype),
            ts_resolution: TsResolution::NanoSecond,
            endianness: Endianness::native(),
        };
        Ok(CaptureWriter {
            sink: Sink::Pcap {
                writer: PcapWriter::with_header(w, header)?,
                linktype,
            },
        })
    }

    /// Writes a pcapng section header to `w`; interfaces (nanosecond timestamps) are
    /// declared as frames of new link types arrive.
    pub fn new_pcapng(w: W) -> Result<Self, CaptureError> {
        Ok(CaptureWriter {
            sink: Sink::PcapNg {
                writer: PcapNgWriter::with_endianness(w, Endianness::native())?,
                interfaces: Vec::new(),
            },
        })
    }

    /// The container format being written.
    pub fn format(&self) -> CaptureFormat {
        match self.sink {
            Sink::Pcap { .. } => CaptureFormat::Pcap,
            Sink::PcapNg { .. } => CaptureFormat::PcapNg,
        }
    }

    /// The link type of a pcap file (`None` for pcapng, which has one per interface).
    pub fn linktype(&self) -> Option<u32> {
        match self.sink {
            Sink::Pcap { linktype, .. } => Some(linktype),
            Sink::PcapNg { .. } => None,
        }
    }

    /// Writes raw frame bytes captured at `timestamp` (since the UNIX epoch), of the
    /// pcap file's link type (a pcapng file takes the first interface's, or Ethernet).
    pub fn write_raw(&mut self, timestamp: Duration, data: &[u8]) -> Result<(), CaptureError> {
        let link = match &self.sink {
            Sink::Pcap { linktype, .. } => *linktype,
            Sink::PcapNg { interfaces, .. } => interfaces
                .first()
                .copied()
                .unwrap_or(net::linktype::ETHERNET),
        };
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        self.write_packet(link, timestamp, len, data)
    }

    /// Writes a frame unchanged. A pcap file refuses a frame of another link type
    /// ([`CaptureError::LinkTypeMismatch`]); a pcapng file declares an interface for it.
    pub fn write_frame(&mut self, frame: &Frame) -> Result<(), CaptureError> {
        let orig = frame
            .orig_len
            .max(u32::try_from(frame.data.len()).unwrap_or(u32::MAX));
        self.write_packet(frame.linktype, frame.timestamp, orig, &frame.data)
    }

    /// Writes `frame` with its UDP payload replaced by `payload` (lengths and checksums
    /// recomputed, see [`net::replace_udp_payload`]).
    pub fn write_with_payload(
        &mut self,
        frame: &Frame,
        udp: &UdpFrame,
        payload: &[u8],
    ) -> Result<(), CaptureError> {
        self.check_link(frame.linktype)?;
        let data = net::replace_udp_payload(&frame.data, udp, payload)?;
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        self.write_packet(frame.linktype, frame.timestamp, len, &data)
    }

    fn check_link(&self, linktype: u32) -> Result<(), CaptureError> {
        match self.sink {
            Sink::Pcap { linktype: file, .. } if file != linktype => {
                Err(CaptureError::LinkTypeMismatch {
                    file,
                    frame: linktype,
                })
            }
            _ => Ok(()),
        }
    }

    fn write_packet(
        &mut self,
        linktype: u32,
        timestamp: Duration,
        orig_len: u32,
        data: &[u8],
    ) -> Result<(), CaptureError> {
        self.check_link(linktype)?;
        match &mut self.sink {
            Sink::Pcap { writer, .. } => {
                writer.write_packet(&PcapPacket::new(timestamp, orig_len, data))?;
            }
            Sink::PcapNg { writer, interfaces } => {
                let id = match interfaces.iter().position(|l| *l == linktype) {
                    Some(i) => i,
                    None => {
                        let mut idb = InterfaceDescriptionBlock::new(
                            DataLink::from(linktype),
                            WRITER_SNAPLEN,
                        );
                        // pcap-file writes `timestamp.as_nanos()` as the raw count.
                        idb.options.push(InterfaceDescriptionOption::IfTsResol(9));
                        writer.write_pcapng_block(idb)?;
                        interfaces.push(linktype);
                        interfaces.len() - 1
                    }
                };
                writer.write_pcapng_block(EnhancedPacketBlock {
                    interface_id: u32::try_from(id).unwrap_or(u32::MAX),
                    timestamp,
                    original_len: orig_len,
                    data: Cow::Borrowed(data),
                    options: Vec::new(),
                })?;
            }
        }
        Ok(())
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(self) -> Result<W, CaptureError> {
        let mut w = match self.sink {
            Sink::Pcap { writer, .. } => writer.into_writer(),
            Sink::PcapNg { writer, .. } => writer.into_inner(),
        };
        w.flush()?;
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::net::SocketAddr;

    #[test]
    fn write_then_read_back_with_replaced_payload() {
        let a: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let ip = net::build_ip_udp(a, b, b"0123456789").unwrap();
        let mut w = CaptureWriter::new(Vec::new(), net::linktype::RAW).unwrap();
        let t = Duration::new(1_700_000_000, 123_456_789);
        w.write_raw(t, &ip).unwrap();
        let bytes = w.finish().unwrap();

        let mut r = CaptureReader::new(Cursor::new(bytes)).unwrap();
        assert_eq!(r.format(), CaptureFormat::Pcap);
        let f = r.next_frame().unwrap().unwrap();
        assert!(r.next_frame().is_none());
        assert_eq!(f.number, 1);
        assert_eq!(f.timestamp, t);
        let (u, p) = f.udp_payload().unwrap();
        assert_eq!(p, b"0123456789");
        assert_eq!((u.src, u.dst), (a, b));

        let mut w = CaptureWriter::new(Vec::new(), net::linktype::RAW).unwrap();
        w.write_with_payload(&f, &u, b"xyz").unwrap();
        let mut r = CaptureReader::new(Cursor::new(w.finish().unwrap())).unwrap();
        let g = r.next_frame().unwrap().unwrap();
        assert_eq!(g.udp_payload().unwrap().1, b"xyz");
        assert_eq!(g.timestamp, t);
        // Mismatched link type is refused.
        let mut w = CaptureWriter::new(Vec::new(), net::linktype::ETHERNET).unwrap();
        assert!(matches!(
            w.write_frame(&g),
            Err(CaptureError::LinkTypeMismatch { .. })
        ));
    }

    #[test]
    fn garbage_files() {
        assert!(matches!(
            CaptureReader::new(Cursor::new(b"hello world".to_vec())),
            Err(CaptureError::UnknownFormat)
        ));
        assert!(CaptureReader::new(Cursor::new(Vec::new())).is_err());
        // A valid header followed by a truncated record: one error, then the end.
        let mut w = CaptureWriter::new(Vec::new(), net::linktype::RAW).unwrap();
        w.write_raw(Duration::from_secs(1), &[0x45; 40]).unwrap();
        let mut bytes = w.finish().unwrap();
        bytes.truncate(bytes.len() - 5);
        let mut r = CaptureReader::new(Cursor::new(bytes)).unwrap();
        assert!(matches!(r.next_frame(), Some(Err(_))));
        assert!(r.next_frame().is_none());
    }

    /// A pcapng file with two interfaces (Ethernet at microseconds, raw IP at
    /// nanoseconds via if_tsresol 9), written with pcap-file's own writer.
    fn sample_pcapng() -> Vec<u8> {
        use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
        use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
        use pcap_file::pcapng::PcapNgWriter;
        use std::borrow::Cow;
        let a: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let ip = net::build_ip_udp(a, b, &[0x80, 0, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4]).unwrap();
        let mut eth = vec![0u8; 12];
        eth.extend_from_slice(&[0x08, 0x00]);
        eth.extend_from_slice(&ip);
        let mut w = PcapNgWriter::new(Vec::new()).unwrap();
        w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::ETHERNET, 65535))
            .unwrap();
        let mut idb = InterfaceDescriptionBlock::new(DataLink::RAW, 65535);
        idb.options.push(InterfaceDescriptionOption::IfTsResol(9));
        w.write_pcapng_block(idb).unwrap();
        for (iface, data, raw) in [(0u32, &eth, 1_500_000u64), (1, &ip, 2_000_000_123)] {
            // pcap-file writes `timestamp.as_nanos()` as the raw count.
            w.write_pcapng_block(EnhancedPacketBlock {
                interface_id: iface,
                timestamp: Duration::from_nanos(raw),
                original_len: data.len() as u32,
                data: Cow::Borrowed(&data[..]),
                options: vec![],
            })
            .unwrap();
        }
        w.into_inner()
    }

    #[test]
    fn pcapng_two_interfaces() {
        let mut r = CaptureReader::new(Cursor::new(sample_pcapng())).unwrap();
        assert_eq!(r.format(), CaptureFormat::PcapNg);
        let f1 = r.next_frame().unwrap().unwrap();
        let f2 = r.next_frame().unwrap().unwrap();
        assert!(r.next_frame().is_none());
        assert_eq!(
            (f1.linktype, f2.linktype),
            (net::linktype::ETHERNET, net::linktype::RAW)
        );
        // 1_500_000 microseconds; 2_000_000_123 nanoseconds
        assert_eq!(f1.timestamp, Duration::from_millis(1_500));
        assert_eq!(f2.timestamp, Duration::from_nanos(2_000_000_123));
        assert_eq!(f1.udp_payload().unwrap().1, f2.udp_payload().unwrap().1);
    }

    #[test]
    fn pcapng_writer_keeps_each_link_type() {
        let frames: Vec<Frame> = CaptureReader::new(Cursor::new(sample_pcapng()))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut w = CaptureWriter::new_pcapng(Vec::new()).unwrap();
        assert_eq!(w.format(), CaptureFormat::PcapNg);
        for f in &frames {
            let (u, _) = f.udp_payload().unwrap();
            w.write_with_payload(f, &u, b"new").unwrap();
        }
        w.write_frame(&frames[0]).unwrap();
        let mut r = CaptureReader::new(Cursor::new(w.finish().unwrap())).unwrap();
        assert_eq!(r.format(), CaptureFormat::PcapNg);
        for f in &frames {
            let g = r.next_frame().unwrap().unwrap();
            assert_eq!((g.linktype, g.timestamp), (f.linktype, f.timestamp));
            assert_eq!(g.udp_payload().unwrap().1, b"new");
        }
        assert_eq!(r.next_frame().unwrap().unwrap().data, frames[0].data);
        assert!(r.next_frame().is_none());
    }

    #[test]
    fn mutated_files_never_panic() {
        let mut w = CaptureWriter::new(Vec::new(), net::linktype::RAW).unwrap();
        let a: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        for i in 0..5u8 {
            w.write_raw(
                Duration::from_secs(u64::from(i)),
                &net::build_ip_udp(a, a, &[i; 30]).unwrap(),
            )
            .unwrap();
        }
        let samples = [w.finish().unwrap(), sample_pcapng()];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for sample in &samples {
            for _ in 0..3000 {
                let mut m = sample.clone();
                for _ in 0..(1 + rnd() % 4) {
                    let at = (rnd() as usize) % m.len();
                    m[at] = rnd() as u8;
                }
                if rnd() % 4 == 0 {
                    m.truncate((rnd() as usize) % m.len());
                }
                if let Ok(r) = CaptureReader::new(Cursor::new(m)) {
                    for f in r.take(100).flatten() {
                        let _ = f.udp_payload();
                    }
                }
            }
        }
    }

    #[test]
    fn pcapng_tsresol() {
        let i = Interface {
            linktype: 1,
            tsresol: 6,
            tsoffset_secs: 0,
        };
        assert_eq!(i.timestamp(1_500_000), Duration::from_millis(1_500));
        let i = Interface { tsresol: 9, ..i };
        assert_eq!(i.timestamp(1_500_000), Duration::from_micros(1_500));
        let i = Interface {
            tsresol: 0x80 | 10,
            tsoffset_secs: 2,
            ..i
        };
        // 2^-10 s units: 1024 units = 1 s, plus 2 s offset
        assert_eq!(i.timestamp(1024), Duration::from_secs(3));
    }
}
