"""Tickets: conversion from chats, lifecycle, SLA, escalation, macros."""
