// Package events relays PagerDuty events: it validates Events API v2 and v1
// bodies as PagerDuty does, serves the agent's local HTTP API that stores
// them in the durable queue, and delivers them upstream to PagerDuty.
package events
