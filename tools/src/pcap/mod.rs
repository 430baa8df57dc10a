//! `rtp-pcap`: capture analysis, decryption and encryption.
