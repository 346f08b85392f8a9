#!/bin/sh
echo tool one
