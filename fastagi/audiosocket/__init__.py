"""Asterisk AudioSocket: the bridge between an Asterisk channel's audio and a call's media."""
