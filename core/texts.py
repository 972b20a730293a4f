"""Every user-facing sentence, in English and French, in one place.

Keys are stable identifiers used by notices and by ``UserError.key``; parameters are ``str.format`` fields.
A missing French text falls back to English, and a missing key is a bug caught by tests/core/test_texts.py.

Counts: a text given an integer ``count`` may have plural variants, ``<key>#zero`` (said differently when there
are none) and ``<key>#one`` (the singular: 1 in English; 0 and 1 in French, "0 abonné"). :func:`t` picks them.
"""

from __future__ import annotations

from typing import Any

DEFAULT_LOCALE = "en"
LOCALES = ("en", "fr")

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        # --- validation errors (UserError.key) ---
        # --- audio sources ---
        "audio.bad_source": "I can't play “{text}” — give a stream URL (`https://…`, `rtmp://…`, `srt://…`, an "
        "HLS `.m3u8`), `file:<name>` from the media folder, or `browser` to speak from the Space page.",
        "audio.bad_file": "“{text}” isn't a file name in the media folder — use `file:<name>`, e.g. `file:intro.ogg`.",
        "time.unreadable": "I couldn't read “{text}” as a date and time — try `{example}`, `in 2 hours` or "
        "`2026-12-01 18:30 Europe/Paris`.",
        "time.missing_time": "“{text}” has a date but no time — add one, e.g. `{text} 20:00`.",
        "time.unknown_zone": "I don't know the time zone “{zone}” — use an IANA name such as `Europe/Paris` "
        "or `America/New_York`.",
        "time.nonexistent": "{local} doesn't exist in {zone}: the clocks jump forward then. "
        "Did you mean {alternatives}?",
        "time.ambiguous": "{local} happens twice in {zone}: the clocks go back then. "
        "Add the offset to choose: {alternatives}.",
        "time.past": "That time ({when}) has already passed — pick a time in the future.",
        "time.too_far": "That's too far ahead: Spaces can be scheduled up to {days} days in advance.",
        "time.bad_clock": "“{time}” isn't a time of day: hours go from 0 to 23 (1 to 12 with am/pm) and "
        "minutes from 0 to 59 — e.g. `20:00` or `8pm`.",
        "time.bad_date": "“{date}” isn't a date in the calendar — check the day and the month (day first: "
        "`24/12`, or with the month's name: `Dec 24`).",
        "time.two_days": "“{text}” names two different days: {first} and {second}. Keep only the one you mean.",
        "time.two_times": "Those two times differ: {first} and {second}. Keep only the one you mean.",
        "time.which_hour": "“{text}” could be {choices} — add am or pm, or write the 24-hour time, e.g. `20:00`.",
        "time.which_date": "“{text}” could be {choices} — write the month as a word, e.g. `Dec 1` or `Jan 12`.",
        "time.which_day": "“{text}” could mean {choices} — name the day, e.g. with its date: `Dec 1 20:00`.",
        "time.which_zone": "I'm not sure what “{zone}” means here: {choices}. Write the zone as a name "
        "(`Europe/London`) or an offset (`UTC+1`) — or, if “{zone}” belongs to the title, put the title after "
        "`|`: `/space tomorrow 20:00 | {zone} …`.",
        "time.vague": "“{text}” is too vague to start a Space — give a time, e.g. `in 30 minutes` or "
        "`tomorrow 20:00`.",
        "time.no_unit": "“{text}” — minutes or hours? e.g. `{text} minutes`.",
        "time.recurring": "“{text}” repeats, but a Space happens once: give its date, e.g. `monday 20:00`, "
        "and schedule the next ones later.",
        "time.unclear_split": "I can't tell the time from the title in “{text}”. Put the time first and the title "
        "after `|`, e.g. `/space tomorrow 20:00 | Weekly AMA`.",
        "title.empty": "Give your Space a title, e.g. `/space tomorrow 20:00 Weekly AMA`.",
        "title.missing": "I read the time as {when}, but found no title. Add it after the time, e.g. "
        "`/space tomorrow 20:00 Weekly AMA`.",
        "title.too_long": "That title is {length} characters long; keep it under {limit}.",
        "title.invalid": "Titles can't contain control characters — please type it again.",
        "description.too_long": "That description is {length} characters long; keep it under {limit}.",
        "host.too_many": "You already have {count} upcoming Spaces (the limit is {limit}). "
        "End or cancel one first.",
        "perm.not_allowed": "Only the host or a moderator of this community can {action} this Space.",
        "space.not_found": "I can't find a Space with the id “{space_id}” — check the link.",
        "space.wrong_state": "This Space is {status}, so you can't {action} it.",
        "space.same_time": "The Space is already scheduled for {when}.",
        "voice.elsewhere": "That voice channel isn't in this server — pick one here.",
        "sub.closed": "This Space is {status}: reminders are closed.",
        "sub.host": "You're the host — you'll get your own reminders.",
        # --- live audio: sources and bridged voice channels ---
        "perm.bridge": "Only a moderator of this server can bring a Space into its voice channels (the host can "
        "in the Space's own server).",
        "bridge.not_voice": "Pick a voice or stage channel of a server.",
        "bridge.too_many": "This Space already plays in {limit} voice channels — unbridge one first.",
        "usage.source": "Usage: `/source <id> <source>` — a stream URL (`https://…`, `rtmp://…`, `srt://…`), "
        "`file:<name>`, `browser` to speak from your browser, or `none` to remove it.",
        "usage.bridge": "Usage: `/space bridge space:<id> channel:<voice channel>`.",
        # --- actions (verbs used in messages above) ---
        "action.cancel": "cancel",
        "action.reschedule": "reschedule",
        "action.start": "start",
        "action.end": "end",
        "action.edit": "edit",
        "action.source": "change the audio source of",
        "action.bridge": "bridge",
        "status.scheduled": "scheduled",
        "status.live": "live",
        "status.ended": "over",
        "status.cancelled": "cancelled",
        # --- replies to the actor ---
        # time and title on lines of their own, so that a misreading of either shows (core/confirmations.py)
        "reply.scheduled": "Scheduled ✓\nTitle: {title}\nTime: {when}\nShare it: {link}",
        "reply.preview": "About to schedule:\nTitle: {title}\nTime: {when}",
        "reply.rescheduled": "Rescheduled ✓\nTitle: {title}\nTime: {when}",
        "reply.renamed": "Renamed ✓\nTitle: {title}\nTime: {when}",
        "reply.fix": "Wrong title? `/rename {space_id} <new title>` · Wrong time? `/reschedule {space_id} <new time>`",
        "reply.cancelled": "Cancelled “{title}”. Its {count} subscribers are being told.",
        "reply.cancelled#one": "Cancelled “{title}”. Its subscriber is being told.",
        "reply.cancelled#zero": "Cancelled “{title}”. Nobody had subscribed yet.",
        "reply.started": "You're live 🟣 “{title}” — notifying your subscribers ({count}).",
        "reply.started#one": "You're live 🟣 “{title}” — notifying your subscriber.",
        "reply.started#zero": "You're live 🟣 “{title}” — nobody has subscribed yet: share the link!",
        "reply.ended": "Ended “{title}”. Thanks for hosting!",
        "reply.already_live": "“{title}” is already live.",
        "reply.source_set": "🎙️ Audio source of “{title}”: {source}",
        "reply.source_browser": "🎙️ “{title}” will play your microphone from your browser.",
        "reply.source_cleared": "“{title}” has no audio source any more.",
        "reply.bridged": "🔊 “{title}” will play in {channel}.",
        "reply.already_bridged": "“{title}” already plays in {channel}.",
        "reply.unbridged": "“{title}” no longer plays in {channel}.",
        "reply.not_bridged": "“{title}” wasn't playing in {channel}.",
        # the host's private page: never on a card, never to anyone but the host
        "reply.host_link": "🎙️ Speak from your browser (keep this link to yourself): {link}",
        "notice.host_problem": "⚠️ Your audio for “{title}” isn't working: {detail}",
        "notice.host_problem_hint": "Listeners hear silence until it comes back. Set another source with "
        "`/source {space_id} <source>`, or `/source {space_id} browser` to speak from your browser.",
        "audio.problem.source": "the source can't be read ({detail})",
        "audio.problem.browser": "your browser stopped sending sound",
        "audio.problem.voice": "I can't play in {channel} ({detail})",
        "reply.reach": "Your live notice: {messaged} messaged, {mentioned} mentioned in the chat (DMs closed), "
        "{unreachable} unreachable.",
        "reply.subscribed": "🔔 Reminder set for “{title}” — I'll message you when it starts.",
        "reply.already_subscribed": "You're already subscribed to “{title}”.",
        "reply.unsubscribed": "Reminder removed for “{title}”.",
        "reply.not_subscribed": "You weren't subscribed to “{title}”.",
        "reply.no_spaces": "No upcoming Spaces here. Schedule one with `/space tomorrow 20:00 Title`.",
        # --- cards and notices ---
        "card.scheduled": "🗓 {when}",
        "card.host": "Host: {host}",
        "card.subscribers": "🔔 {count} subscribed",
        "card.live": "🟣 LIVE",
        "card.ended": "Ended",
        "card.cancelled": "❌ Cancelled",
        "card.starts_in": "Starts {relative}",
        "button.subscribe": "🔔 Set reminder",
        "button.unsubscribe": "🔕 Unsubscribe",
        "button.share": "Share",
        "button.start": "▶️ Start now",
        "button.end": "⏹ End",
        "button.join": "🎧 Join",
        "button.join_voice": "🔊 Join voice",
        "button.listen": "🎧 Listen",
        "button.details": "Details",
        "notice.host_t30": "⏰ Your Space “{title}” starts in 30 minutes ({when}).",
        "notice.host_t0": "⏰ It's time: your Space “{title}” is scheduled to start now.",
        "notice.host_hint": "Press Start when you're ready — your subscribers are notified the moment you do.",
        "notice.live": "🟣 “{title}” is live now — hosted by {host}.",
        "notice.cancelled": "❌ “{title}” ({when}) was cancelled.",
        "notice.rescheduled": "🗓 “{title}” moved to {when}.",
        "notice.mention": "{mentions} — I couldn't message you privately:",
        "notice.delayed": "(delayed by {minutes} min — the service was catching up)",
        "web.your_time": "Your time:",
        # --- live audio on the web (the share page's player, the host's microphone page) ---
        "web.listen": "Listen live",
        "web.listen_missing": "Nothing to hear: this Space isn't live, or has no audio.",
        "web.host_title": "Speak in “{title}”",
        "web.host_private": "Keep this link private: anyone who has it can speak in your Space.",
        "web.host_not_browser": "This Space's audio comes from “{source}”. Set its source to `browser` to speak from this page.",
        "web.host_no_source": "This Space has no audio source yet. Set it to `browser` to speak from this page.",
        "web.mic_start": "Start speaking",
        "web.mic_stop": "Stop",
        "web.mic_level": "Microphone level",
        "web.mic_idle": "Not sending. Press Start speaking when you're ready.",
        "web.mic_asking": "Allow the microphone when your browser asks…",
        "web.mic_connecting": "Connecting…",
        "web.mic_live": "🔴 You're on air: listeners hear you.",
        "web.mic_reconnecting": "Connection lost — reconnecting…",
        "web.mic_waiting": "Waiting for the Space to go live — start it, and this page connects by itself.",
        "web.mic_denied": "The browser blocked the microphone. Allow it in the address bar's site settings, then press Start speaking again.",
        "web.mic_no_device": "No microphone found. Plug one in, then press Start speaking again.",
        "web.mic_unsupported": "This browser can't record audio for streaming. Try a recent Firefox, Chrome, Edge or Safari.",
        "web.mic_insecure": "Browsers only give the microphone to secure pages: open this link with https.",
        "web.mic_ended": "This Space has ended — thanks for hosting!",
        "web.mic_replaced": "You're speaking from another page or device now, so this one stopped.",
        "web.mic_not_browser": "This Space's audio comes from a stream or a file, not from this page: nothing is sent from here.",
        # --- the share page /s/<id> (bots/web/share.py) and its preview image ---
        "web.tagline": "Scheduled live audio rooms for Discord, Telegram and Slack",
        "web.status.scheduled": "Scheduled",
        "web.status.live": "Live now",
        "web.status.ended": "Ended",
        "web.status.cancelled": "Cancelled",
        "web.ring_live": "{host} is live now",
        "web.hosted_by": "Hosted by {host}",
        "web.host_avatar": "{host}'s avatar",
        "web.host_unknown": "the host",
        "web.host_zone": "Host's time ({zone}):",
        "web.starts": "Starts {relative}",
        "web.starting_soon": "Starting any moment now",
        "web.started": "Started {relative}",
        "web.ended_note": "This Space has ended. Thanks for listening!",
        "web.cancelled_note": "The host cancelled this Space. It won't take place.",
        "web.countdown_label": "Time left before it starts",
        "web.subscribers": "{count} subscribed",
        "web.subscribers#one": "{count} subscribed",
        "web.add_to_calendar": "Add to calendar",
        "web.calendar_file": "Calendar file (.ics)",
        "web.calendar_feed": "All Spaces of this community",
        "web.google": "Google Calendar",
        "web.outlook": "Outlook",
        "web.subscribe": "Get reminded",
        "web.join": "Join the Space",
        "web.subscribe_on": "Subscribe on {label}",
        "web.join_on": "Join on {label}",
        # the share page's buttons: where the Space is announced ("Subscribe on {label}")
        "web.place.discord": "Discord",
        "web.place.discord_event": "Discord (event)",
        "web.place.telegram": "Telegram",
        "web.place.slack": "Slack",
        "web.subscribe_in_chat": "Press 🔔 on the Space's card in the chat where it was announced to be reminded when it starts.",
        "web.updates": "This page updates by itself.",
        "web.not_found_title": "This Space doesn't exist",
        "web.not_found_body": "No Space has the id “{space_id}”. Check the link: it may have been cut, or mistyped.",
        "web.not_found_help": "Spaces are announced in chats: open the link from the Space's card there.",
        "web.home": "Spaces home",
        "web.in_days": "in {count} days",
        "web.in_days#one": "in {count} day",
        "web.in_hours": "in {count} hours",
        "web.in_hours#one": "in {count} hour",
        "web.in_minutes": "in {count} minutes",
        "web.in_minutes#one": "in {count} minute",
        "web.ago_days": "{count} days ago",
        "web.ago_days#one": "{count} day ago",
        "web.ago_hours": "{count} hours ago",
        "web.ago_hours#one": "{count} hour ago",
        "web.ago_minutes": "{count} minutes ago",
        "web.ago_minutes#one": "{count} minute ago",
        "web.units": "d h min s",
        "tg.anonymous": "I can't tell who you are when you post anonymously or as a channel — send it as "
        "yourself to schedule or manage a Space.",
        "tg.unsubscribed": "Reminder removed for “{title}”. Tap 🔔 again to set it back.",
        # --- Discord (application command descriptions, autocomplete, interaction answers) ---
        "dc.cmd.space": "Schedule and manage live audio Spaces",
        "dc.cmd.schedule": "Schedule a Space in this channel",
        "dc.cmd.list": "Upcoming Spaces in this channel",
        "dc.cmd.start": "Start a Space now (host and moderators)",
        "dc.cmd.end": "End a live Space (host and moderators)",
        "dc.cmd.cancel": "Cancel a Space (host and moderators)",
        "dc.cmd.reschedule": "Move a Space to another time (host and moderators)",
        "dc.cmd.rename": "Give a Space a new title (host and moderators)",
        "dc.opt.new_title": "The new title",
        "dc.cmd.link": "Share this channel's Spaces with another chat (any platform): get or enter a code",
        "dc.cmd.unlink": "Stop sharing this channel's Spaces with the chats it is linked with",
        "dc.opt.link_code": "The code the other chat's moderator got (leave empty to get one)",
        "dc.opt.title": "The Space's title",
        "dc.opt.when": "When it starts, e.g. tomorrow 20:00, in 2 hours, friday 18:30",
        "dc.opt.timezone": "The time zone to read it in (IANA name, e.g. Europe/Paris)",
        "dc.opt.voice_channel": "A voice or stage channel where it happens",
        "dc.opt.description": "What it is about",
        "dc.opt.space": "Which Space",
        "dc.opt.new_when": "The new time, e.g. tomorrow 21:00",
        "dc.cmd.source": "Set a Space's audio: a stream URL, file:<name>, browser, or none (host and moderators)",
        "dc.cmd.bridge": "Play a Space (its id or link) in one of this server's voice channels (moderators)",
        "dc.cmd.unbridge": "Stop playing a Space in a voice channel of this server",
        "dc.opt.source": "Audio: a stream URL (https, rtmp, srt…), file:<name>, or browser for your microphone",
        "dc.opt.bridge_channel": "The voice or stage channel to play it in",
        "dc.in.minutes": "in {count} minutes",
        "dc.in.minutes#one": "in 1 minute",
        "dc.in.minutes#zero": "now",
        "dc.in.hours": "in {count} hours",
        "dc.in.hours#one": "in 1 hour",
        "dc.in.days": "in {count} days",
        "dc.in.days#one": "in 1 day",
        "dc.example.tomorrow": "tomorrow 20:00",
        "dc.example.in_hour": "in 1 hour",
        "dc.guild_only": "Use this in a server channel: Spaces are announced where they are scheduled.",
        "dc.dm_link_hint": "Here, `/space link` links your Discord account with your accounts on other platforms.",
        "dc.share": "Share this Space: {link}",
        # --- Slack (buttons, confirm dialogs, the schedule and reschedule modals, the App Home) ---
        "sl.button.calendar": "🗓 Add to calendar",
        "sl.button.share": "🔗 Share link",
        "sl.button.reschedule": "🕑 Reschedule",
        "sl.button.cancel": "❌ Cancel",
        "sl.confirm.cancel.title": "Cancel this Space?",
        "sl.confirm.cancel.text": "Everyone subscribed is told it's cancelled. This can't be undone.",
        "sl.confirm.cancel.yes": "Cancel the Space",
        "sl.confirm.cancel.no": "Keep it",
        "sl.confirm.end.title": "End this Space?",
        "sl.confirm.end.text": "The live audio stops for everyone. This can't be undone.",
        "sl.confirm.end.yes": "End it",
        "sl.confirm.end.no": "Not yet",
        "sl.modal.schedule": "Schedule a Space",
        "sl.modal.reschedule": "Reschedule",
        "sl.modal.submit": "Schedule",
        "sl.modal.reschedule_submit": "Save",
        "sl.modal.close": "Close",
        "sl.modal.title": "Title",
        "sl.modal.title_hint": "e.g. Weekly AMA",
        "sl.modal.description": "Description",
        "sl.modal.description_hint": "What is it about? (optional)",
        "sl.modal.date": "Date",
        "sl.modal.date_hint": "Pick a day",
        "sl.modal.time": "Time",
        "sl.modal.time_hint": "Pick a time",
        "sl.modal.timezone": "Time zone",
        "sl.modal.timezone_hint": "The zone the time is in",
        "sl.modal.current": "“{title}” is now scheduled for {when}.",
        "sl.error.title": "Give your Space a title.",
        "sl.error.date": "Pick the day it starts.",
        "sl.error.time": "Pick the time it starts.",
        "sl.error.zone": "Pick a time zone from the list.",
        "sl.home.mine": "Your upcoming Spaces",
        "sl.home.followed": "Spaces you follow",
        "sl.home.workspace": "All upcoming Spaces in this workspace",
        "sl.home.mine_empty": "You have nothing scheduled. Type `/space tomorrow 20:00 Town hall` in a channel, "
        "or just `/space` for a form.",
        "sl.home.followed_empty": "You follow no Space yet: press 🔔 Set reminder on a Space's card.",
        "sl.home.workspace_empty": "Nothing is scheduled in this workspace.",
        "sl.home.item": "{when} · id `{space_id}`",
        "sl.home.more": "…and {count} more: `/space list` in a channel shows its Spaces.",
        "sl.home.help": "`/space help` lists every command.",
        "sl.not_installed": "Spaces is no longer installed in this workspace: ask an admin to add it again.",
        "error.generic": "Something went wrong on my side — please try again in a moment.",
        # --- conversations and chat commands (all platforms) ---
        "welcome": "Hi {name}! I announce live audio Spaces and remind you when they start.\n"
        "Schedule one in a group or here: `/space tomorrow 20:00 Weekly AMA`.",
        "help": "`/space <when> <title>` — schedule (or just `/space` and I'll ask)\n"
        "`/spaces` — upcoming Spaces here\n"
        "`/reschedule <id> <when>` · `/rename <id> <title>` · `/cancel <id>` · `/live <id>` · `/end <id>` — "
        "host and admins\n"
        "`/source <id> <stream URL | browser | none>` — the Space's audio (host and admins)\n"
        "`/tz <zone>` — your time zone (now {zone}) · `/chattz <zone>` — this chat's (admins)\n"
        "`/space link` · `/space unlink` — share this chat's Spaces with chats on other platforms (admins); in "
        "private, link your accounts",
        "ask.title": "What's the title of your Space? (reply to this message)",
        "ask.time": "When does “{title}” start? e.g. `tomorrow 20:00`, `in 2 hours`, `friday 18:30 Europe/Paris`",
        "list.header": "Upcoming Spaces here:",
        "list.item": "{marker}{title} — {when} · id `{space_id}`",
        "list.feed": "📅 All of them in your calendar: {url}",
        "usage.id": "Tell me which Space: `/{command} <id>` — `/spaces` lists them.",
        "usage.reschedule": "Usage: `/reschedule <id> <new time>`, e.g. `/reschedule <id> tomorrow 21:00`.",
        "usage.rename": "Usage: `/rename <id> <new title>`, e.g. `/rename <id> Weekly AMA #2`.",
        "usage.tz": "Usage: `/tz Europe/Paris` (an IANA time zone name).",
        "reply.zone_set": "Your time zone is now {zone}.",
        "reply.community_zone_set": "This chat's default time zone is now {zone}.",
        "reply.open_dm": "🔔 Reminder set! Press Start in our private chat so I can message you; "
        "until then I'll mention you here.",
        "reply.live_now": "“{title}” is live right now — join: {link}",
        "reply.host_open_dm": "Tap below and press Start, so I can send you your reminders privately "
        "(otherwise I'll mention you here).",
        "button.get_reminders": "🔔 Get my reminders",
        "perm.admins_only": "Only admins of this chat can change its settings.",
        # --- linking chats and accounts across platforms (core.services.links) ---
        "link.code": "To share this chat's Spaces with another chat — on Telegram, Discord, Slack or the "
        "console — a moderator there sends `/space link {code}` (on Telegram: `/link {code}`). The code works "
        "once, for {minutes} minutes.",
        "link.code_private": "To link your accounts, send this to me in a private chat on your other platform: "
        "`/space link {code}` (on Telegram: `/link {code}`). The code works once, for {minutes} minutes.",
        "link.linked": "Linked ✓ This chat now shares its Spaces with {what}: a Space scheduled in any of them "
        "is announced in all, with one subscriber list. `/space unlink` undoes it.",
        "link.accounts_linked": "Linked ✓ Your accounts ({accounts}) are one person now: each reminder reaches "
        "you once, on the platform you subscribed from last. `/space unlink` here undoes it.",
        "link.told": "This chat now shares its Spaces with {what}: Spaces scheduled there are announced here too.",
        "link.told_unlinked": "{what} no longer shares its Spaces with this chat.",
        "link.unlinked": "Unlinked: this chat no longer shares its Spaces with {what}. Cards already posted stay.",
        "link.unlinked_account": "Unlinked: this account is on its own again ({accounts} no longer linked to it).",
        "link.not_linked": "This chat isn't linked with any other — `/space link` makes a code to link it.",
        "link.not_linked_account": "This account isn't linked with any other.",
        "link.bad_code": "That code is unknown, used or expired (codes work once, for 10 minutes). A code from "
        "a group links chats, typed in another group; one from a private chat links accounts, typed in a "
        "private chat. Send `/space link` again for a new one.",
        "link.self": "That's this chat's own code: type it in the other chat.",
        "link.self_account": "That's this account's own code: type it in a private chat with me on your other "
        "platform.",
        "link.already": "These two chats already share their Spaces.",
        "link.already_account": "These two accounts are already linked.",
        "link.moderators_only": "Only moderators of this chat can link it with others.",
        "link.unavailable": "Linking chats isn't available here.",
        "link.what.telegram": "a Telegram group",
        "link.what.discord": "a Discord channel",
        "link.what.slack": "a Slack channel",
        "link.what.console": "the console",
        "link.more": " (and {count} more chats)",
        "link.more#one": " (and 1 more chat)",
        "conversation.cancelled": "OK, nothing was scheduled.",
        "input.too_long": "That message is too long for me to read — keep it under {limit} characters.",
        # --- the console (a terminal: `spaces run`) ---
        "console.greet": 'Console ready — you are "{host}", the host, in #{chat}. Try:\n'
        "  /space in 31 minutes Weekly AMA     (both reminders in half an hour)\n"
        "then /as alice and /subscribe <id>, and /as {host} and /start <id>. /help lists everything. "
        "/lang fr: en français.\n"
        "To reach a real community, set TELEGRAM_BOT_TOKEN or DISCORD_BOT_TOKEN (see README.md, “Connecting a "
        "platform”)\nand restart; `spaces doctor` checks the settings. Slack is coming next.",
        "console.help": "Commands (ids are the 10-character codes shown on cards):\n"
        "  /space <when> <title>            schedule a Space, e.g. /space tomorrow 20:00 Weekly AMA\n"
        "  /spaces                          list upcoming Spaces in this chat, in your time zone\n"
        "  /subscribe <id>                  get a DM when it starts      /unsubscribe <id>\n"
        "  /start <id>   /end <id>          go live / finish (host or moderator)\n"
        "  /cancel <id>                     cancel a scheduled Space\n"
        "  /reschedule <id> <when>          move it, e.g. /reschedule abcd234567 friday 18:00\n"
        "  /rename <id> <title>             give it a new title, e.g. /rename abcd234567 Weekly AMA #2\n"
        "  /source <id> <source>            its audio: a stream URL, file:<name>, browser, or none\n"
        '  /as <name>                       act as someone else (you are "{host}", the host; try /as alice)\n'
        "  /mod on|off                      give the acting user moderator rights\n"
        "  /tz <zone>                       your time zone, e.g. /tz Europe/Paris (now {zone})\n"
        "  /lang en|fr                      your language\n"
        "  /help                            this text              /quit   stop the service",
        "console.scheduled_hint": "  id {space_id} — /as alice then /subscribe {space_id} to get its reminders",
        "console.bye": "Bye.",
        "console.as_host": 'You are "{host}" again, the host.',
        "console.as_listener": "You are now {name}, a listener. /as {host} to switch back.",
        "console.mod_on": "{name} is now a moderator of #{chat}.",
        "console.mod_off": "{name} is no longer a moderator of #{chat}.",
        "console.zone_set": "Time zone for {name}: {zone}. Times you type and /spaces now read in it.",
        "console.lang_set": "Language for {name}: English.",
        "console.error": "Something went wrong on our side (see the log); the command was not completed.",
        "console.edited": "(edited {kind} {id})",
        "console.host_only": "(host)",
        "console.not_a_command": "Commands start with '/'. Type /help to see them.",
        "console.unknown": "I don't know /{command}. Type /help to see the commands.",
        "console.usage.space": "Say when and what: /space tomorrow 20:00 Weekly AMA",
        "console.usage.id": "Which Space? Usage: /{command} <id> (see /spaces for ids)",
        "console.usage.reschedule": "Usage: /reschedule <id> <when>, e.g. /reschedule abcd234567 friday 18:00",
        "console.usage.as": "Usage: /as <name> — letters, digits, '_', '-' or '.', e.g. /as alice",
        "console.usage.mod": "Usage: /mod on  or  /mod off",
        "console.usage.source": "Usage: /source <id> <source> — a stream URL, file:<name>, browser, or none",
        "console.usage.tz": "Usage: /tz <IANA zone>, e.g. /tz Europe/Paris",
        "console.usage.lang": "Usage: /lang {choices}",
    },
    "fr": {
        # --- audio sources ---
        "audio.bad_source": "Je ne peux pas lire « {text} » — donnez l'URL d'un flux (`https://…`, `rtmp://…`, "
        "`srt://…`, un `.m3u8` HLS), `file:<nom>` du dossier média, ou `browser` pour parler depuis la page du Space.",
        "audio.bad_file": "« {text} » n'est pas un nom de fichier du dossier média — utilisez `file:<nom>`, par "
        "exemple `file:intro.ogg`.",
        "time.unreadable": "Je n'ai pas compris « {text} » comme une date et une heure — essayez `demain 20h`, "
        "`dans 2 heures` ou `2026-12-01 18:30 Europe/Paris`.",
        "time.missing_time": "« {text} » a une date mais pas d'heure — ajoutez-en une, par ex. `{text} 20h`.",
        "time.unknown_zone": "Je ne connais pas le fuseau « {zone} » — utilisez un nom IANA comme "
        "`Europe/Paris` ou `America/Montreal`.",
        "time.nonexistent": "{local} n'existe pas en {zone} : on avance les horloges à ce moment-là. "
        "Vouliez-vous dire {alternatives} ?",
        "time.ambiguous": "{local} arrive deux fois en {zone} : on recule les horloges à ce moment-là. "
        "Ajoutez le décalage pour choisir : {alternatives}.",
        "time.past": "Cette heure ({when}) est déjà passée — choisissez une heure à venir.",
        "time.too_far": "C'est trop loin : on peut programmer un Space jusqu'à {days} jours à l'avance.",
        "time.bad_clock": "« {time} » n'est pas une heure : les heures vont de 0 à 23 (de 1 à 12 avec am/pm) et "
        "les minutes de 0 à 59 — par ex. `20h` ou `20:00`.",
        "time.bad_date": "« {date} » n'est pas une date du calendrier — vérifiez le jour et le mois (le jour "
        "d'abord : `24/12`, ou avec le nom du mois : `24 déc.`).",
        "time.two_days": "« {text} » désigne deux jours différents : {first} et {second}. Gardez seulement "
        "celui que vous voulez.",
        "time.two_times": "Ces deux heures diffèrent : {first} et {second}. Gardez seulement celle que vous "
        "voulez.",
        "time.which_hour": "« {text} » peut vouloir dire {choices} — écrivez l'heure sur 24 heures, par ex. `20h`.",
        "time.which_date": "« {text} » peut être {choices} — écrivez le mois en toutes lettres, par ex. "
        "`1er déc.` ou `12 janv.`.",
        "time.which_day": "« {text} » peut vouloir dire {choices} — précisez le jour, par ex. avec sa date : "
        "`1er déc. 20h`.",
        "time.which_zone": "Je ne sais pas ce que « {zone} » veut dire ici : {choices}. Écrivez le fuseau par "
        "son nom (`Europe/London`) ou son décalage (`UTC+1`) — ou, si « {zone} » fait partie du titre, mettez "
        "le titre après `|` : `/space demain 20h | {zone} …`.",
        "time.vague": "« {text} » est trop vague pour lancer un Space — donnez une heure, par ex. "
        "`dans 30 minutes` ou `demain 20h`.",
        "time.no_unit": "« {text} » — minutes ou heures ? par ex. `{text} minutes`.",
        "time.recurring": "« {text} » se répète, mais un Space n'a lieu qu'une fois : donnez sa date, par ex. "
        "`lundi 20h`, et programmez les suivants plus tard.",
        "time.unclear_split": "Je n'arrive pas à séparer l'heure du titre dans « {text} ». Mettez l'heure d'abord "
        "et le titre après `|`, par ex. `/space demain 20h | AMA hebdo`.",
        "title.empty": "Donnez un titre à votre Space, par ex. `/space demain 20h AMA hebdo`.",
        "title.missing": "J'ai lu l'heure : {when}, mais pas de titre. Ajoutez-le après l'heure, par ex. "
        "`/space demain 20h AMA hebdo`.",
        "title.too_long": "Ce titre fait {length} caractères ; limitez-le à {limit}.",
        "title.invalid": "Un titre ne peut pas contenir de caractères de contrôle — retapez-le.",
        "description.too_long": "Cette description fait {length} caractères ; limitez-la à {limit}.",
        "host.too_many": "Vous avez déjà {count} Spaces à venir (la limite est {limit}). "
        "Terminez-en ou annulez-en un d'abord.",
        "perm.not_allowed": "Seul l'hôte ou un modérateur de cette communauté peut {action} ce Space.",
        "space.not_found": "Je ne trouve pas de Space avec l'identifiant « {space_id} » — vérifiez le lien.",
        "space.wrong_state": "Ce Space est {status} : impossible de le {action}.",
        "space.same_time": "Le Space est déjà prévu pour {when}.",
        "voice.elsewhere": "Ce salon vocal n'est pas sur ce serveur — choisissez-en un ici.",
        "sub.closed": "Ce Space est {status} : les rappels sont fermés.",
        "sub.host": "Vous êtes l'hôte — vous recevrez vos propres rappels.",
        # --- live audio: sources and bridged voice channels ---
        "perm.bridge": "Seul un modérateur de ce serveur peut amener un Space dans ses salons vocaux (l'hôte le "
        "peut sur le serveur du Space).",
        "bridge.not_voice": "Choisissez un salon vocal ou une scène d'un serveur.",
        "bridge.too_many": "Ce Space est déjà diffusé dans {limit} salons vocaux — retirez-en un d'abord.",
        "usage.source": "Usage : `/source <id> <source>` — l'URL d'un flux (`https://…`, `rtmp://…`, `srt://…`), "
        "`file:<nom>`, `browser` pour parler depuis votre navigateur, ou `none` pour la retirer.",
        "usage.bridge": "Usage : `/space bridge space:<id> channel:<salon vocal>`.",
        "action.cancel": "annuler",
        "action.reschedule": "reprogrammer",
        "action.start": "démarrer",
        "action.end": "terminer",
        "action.edit": "modifier",
        "action.source": "changer la source audio de",
        "action.bridge": "diffuser",
        "status.scheduled": "programmé",
        "status.live": "en direct",
        "status.ended": "terminé",
        "status.cancelled": "annulé",
        "reply.scheduled": "Programmé ✓\nTitre : {title}\nHeure : {when}\nÀ partager : {link}",
        "reply.preview": "Prêt à programmer :\nTitre : {title}\nHeure : {when}",
        "reply.rescheduled": "Reprogrammé ✓\nTitre : {title}\nHeure : {when}",
        "reply.renamed": "Renommé ✓\nTitre : {title}\nHeure : {when}",
        "reply.fix": "Mauvais titre ? `/rename {space_id} <nouveau titre>` · Mauvaise heure ? "
        "`/reschedule {space_id} <nouvelle heure>`",
        "reply.cancelled": "« {title} » est annulé. Ses {count} abonnés sont prévenus.",
        "reply.cancelled#one": "« {title} » est annulé. Son abonné est prévenu.",
        "reply.cancelled#zero": "« {title} » est annulé. Personne ne s'y était encore abonné.",
        "reply.started": "Vous êtes en direct 🟣 « {title} » — vos abonnés sont prévenus ({count}).",
        "reply.started#one": "Vous êtes en direct 🟣 « {title} » — votre abonné est prévenu.",
        "reply.started#zero": "Vous êtes en direct 🟣 « {title} » — personne ne s'est encore abonné : "
        "partagez le lien !",
        "reply.ended": "« {title} » est terminé. Merci d'avoir animé !",
        "reply.already_live": "« {title} » est déjà en direct.",
        "reply.source_set": "🎙️ Source audio de « {title} » : {source}",
        "reply.source_browser": "🎙️ « {title} » diffusera votre micro depuis votre navigateur.",
        "reply.source_cleared": "« {title} » n'a plus de source audio.",
        "reply.bridged": "🔊 « {title} » sera diffusé dans {channel}.",
        "reply.already_bridged": "« {title} » est déjà diffusé dans {channel}.",
        "reply.unbridged": "« {title} » n'est plus diffusé dans {channel}.",
        "reply.not_bridged": "« {title} » n'était pas diffusé dans {channel}.",
        "reply.host_link": "🎙️ Parlez depuis votre navigateur (gardez ce lien pour vous) : {link}",
        "notice.host_problem": "⚠️ Le son de « {title} » ne fonctionne pas : {detail}",
        "notice.host_problem_hint": "Les auditeurs entendent un silence jusqu'à son retour. Choisissez une autre "
        "source avec `/source {space_id} <source>`, ou `/source {space_id} browser` pour parler depuis votre "
        "navigateur.",
        "audio.problem.source": "la source est illisible ({detail})",
        "audio.problem.browser": "votre navigateur n'envoie plus de son",
        "audio.problem.voice": "je ne peux pas jouer dans {channel} ({detail})",
        "reply.reach": "Votre annonce du direct — prévenus en privé : {messaged}, mentionnés dans le groupe "
        "(messages privés fermés) : {mentioned}, injoignables : {unreachable}.",
        "reply.subscribed": "🔔 Rappel activé pour « {title} » — je vous écris dès qu'il commence.",
        "reply.already_subscribed": "Vous êtes déjà abonné à « {title} ».",
        "reply.unsubscribed": "Rappel supprimé pour « {title} ».",
        "reply.not_subscribed": "Vous n'étiez pas abonné à « {title} ».",
        "reply.no_spaces": "Aucun Space à venir ici. Programmez-en un avec `/space demain 20h Titre`.",
        "card.scheduled": "🗓 {when}",
        "card.host": "Hôte : {host}",
        "card.subscribers": "🔔 {count} abonnés",
        "card.subscribers#one": "🔔 {count} abonné",
        "card.live": "🟣 EN DIRECT",
        "card.ended": "Terminé",
        "card.cancelled": "❌ Annulé",
        "card.starts_in": "Commence {relative}",
        "button.subscribe": "🔔 Me le rappeler",
        "button.unsubscribe": "🔕 Me désabonner",
        "button.share": "Partager",
        "button.start": "▶️ Démarrer",
        "button.end": "⏹ Terminer",
        "button.join": "🎧 Rejoindre",
        "button.join_voice": "🔊 Rejoindre le vocal",
        "button.listen": "🎧 Écouter",
        "button.details": "Détails",
        "notice.host_t30": "⏰ Votre Space « {title} » commence dans 30 minutes ({when}).",
        "notice.host_t0": "⏰ C'est l'heure : votre Space « {title} » doit commencer maintenant.",
        "notice.host_hint": "Appuyez sur Démarrer quand vous êtes prêt — vos abonnés sont prévenus à ce moment-là.",
        "notice.live": "🟣 « {title} » est en direct — animé par {host}.",
        "notice.cancelled": "❌ « {title} » ({when}) a été annulé.",
        "notice.rescheduled": "🗓 « {title} » est déplacé au {when}.",
        "notice.mention": "{mentions} — je n'ai pas pu vous écrire en privé :",
        "notice.delayed": "(en retard de {minutes} min — le service rattrapait son retard)",
        "web.your_time": "Votre heure :",
        # --- l'audio en direct sur le web (le lecteur de la page, le micro de l'hôte) ---
        "web.listen": "Écouter en direct",
        "web.listen_missing": "Rien à écouter : ce Space n'est pas en direct, ou n'a pas d'audio.",
        "web.host_title": "Parler dans « {title} »",
        "web.host_private": "Gardez ce lien privé : quiconque l'a peut parler dans votre Space.",
        "web.host_not_browser": "L'audio de ce Space vient de « {source} ». Choisissez la source `browser` pour parler depuis cette page.",
        "web.host_no_source": "Ce Space n'a pas encore de source audio. Choisissez `browser` pour parler depuis cette page.",
        "web.mic_start": "Commencer à parler",
        "web.mic_stop": "Arrêter",
        "web.mic_level": "Niveau du micro",
        "web.mic_idle": "Rien n'est envoyé. Appuyez sur Commencer à parler quand vous êtes prêt.",
        "web.mic_asking": "Autorisez le micro quand votre navigateur le demande…",
        "web.mic_connecting": "Connexion…",
        "web.mic_live": "🔴 Vous êtes à l'antenne : les auditeurs vous entendent.",
        "web.mic_reconnecting": "Connexion perdue — reconnexion…",
        "web.mic_waiting": "En attente du direct — lancez le Space, et cette page se connecte d'elle-même.",
        "web.mic_denied": "Le navigateur a bloqué le micro. Autorisez-le dans les réglages du site (barre d'adresse), puis appuyez de nouveau sur Commencer à parler.",
        "web.mic_no_device": "Aucun micro trouvé. Branchez-en un, puis appuyez de nouveau sur Commencer à parler.",
        "web.mic_unsupported": "Ce navigateur ne sait pas enregistrer l'audio pour le diffuser. Essayez un Firefox, Chrome, Edge ou Safari récent.",
        "web.mic_insecure": "Les navigateurs ne donnent le micro qu'aux pages sécurisées : ouvrez ce lien en https.",
        "web.mic_ended": "Ce Space est terminé — merci de l'avoir animé !",
        "web.mic_replaced": "Vous parlez maintenant depuis une autre page ou un autre appareil : celle-ci s'est arrêtée.",
        "web.mic_not_browser": "L'audio de ce Space vient d'un flux ou d'un fichier, pas de cette page : rien n'est envoyé d'ici.",
        # --- la page de partage /s/<id> (bots/web/share.py) et son image d'aperçu ---
        "web.tagline": "Des salons audio en direct programmés, pour Discord, Telegram et Slack",
        "web.status.scheduled": "Programmé",
        "web.status.live": "En direct",
        "web.status.ended": "Terminé",
        "web.status.cancelled": "Annulé",
        "web.ring_live": "{host} est en direct",
        "web.hosted_by": "Animé par {host}",
        "web.host_avatar": "Avatar de {host}",
        "web.host_unknown": "l'hôte",
        "web.host_zone": "Heure de l'hôte ({zone}) :",
        "web.starts": "Commence {relative}",
        "web.starting_soon": "Ça commence d'un instant à l'autre",
        "web.started": "Commencé {relative}",
        "web.ended_note": "Ce Space est terminé. Merci de l'avoir écouté !",
        "web.cancelled_note": "L'hôte a annulé ce Space. Il n'aura pas lieu.",
        "web.countdown_label": "Temps restant avant le début",
        "web.subscribers": "{count} abonnés",
        "web.subscribers#one": "{count} abonné",
        "web.add_to_calendar": "Ajouter à l'agenda",
        "web.calendar_file": "Fichier d'agenda (.ics)",
        "web.calendar_feed": "Tous les Spaces de cette communauté",
        "web.google": "Google Agenda",
        "web.outlook": "Outlook",
        "web.subscribe": "Être prévenu",
        "web.join": "Rejoindre le Space",
        "web.subscribe_on": "S'abonner sur {label}",
        "web.join_on": "Rejoindre sur {label}",
        "web.place.discord": "Discord",
        "web.place.discord_event": "Discord (évènement)",
        "web.place.telegram": "Telegram",
        "web.place.slack": "Slack",
        "web.subscribe_in_chat": "Appuyez sur 🔔 sous la carte du Space, dans le chat où il a été annoncé, pour être prévenu quand il commence.",
        "web.updates": "Cette page se met à jour toute seule.",
        "web.not_found_title": "Ce Space n'existe pas",
        "web.not_found_body": "Aucun Space n'a l'identifiant « {space_id} ». Vérifiez le lien : il a peut-être été coupé ou mal recopié.",
        "web.not_found_help": "Les Spaces sont annoncés dans les chats : ouvrez le lien depuis la carte du Space.",
        "web.home": "Accueil de Spaces",
        "web.in_days": "dans {count} jours",
        "web.in_days#one": "dans {count} jour",
        "web.in_hours": "dans {count} heures",
        "web.in_hours#one": "dans {count} heure",
        "web.in_minutes": "dans {count} minutes",
        "web.in_minutes#one": "dans {count} minute",
        "web.ago_days": "il y a {count} jours",
        "web.ago_days#one": "il y a {count} jour",
        "web.ago_hours": "il y a {count} heures",
        "web.ago_hours#one": "il y a {count} heure",
        "web.ago_minutes": "il y a {count} minutes",
        "web.ago_minutes#one": "il y a {count} minute",
        "web.units": "j h min s",
        "tg.anonymous": "Je ne sais pas qui vous êtes quand vous écrivez anonymement ou au nom d'un canal — "
        "écrivez en votre nom pour programmer ou gérer un Space.",
        "tg.unsubscribed": "Rappel supprimé pour « {title} ». Touchez 🔔 à nouveau pour le remettre.",
        # --- Discord (descriptions des commandes, autocomplétion, réponses aux interactions) ---
        "dc.cmd.space": "Programmer et gérer des Spaces audio en direct",
        "dc.cmd.schedule": "Programmer un Space dans ce salon",
        "dc.cmd.list": "Les Spaces à venir dans ce salon",
        "dc.cmd.start": "Démarrer un Space maintenant (hôte et modérateurs)",
        "dc.cmd.end": "Terminer un Space en direct (hôte et modérateurs)",
        "dc.cmd.cancel": "Annuler un Space (hôte et modérateurs)",
        "dc.cmd.reschedule": "Déplacer un Space à une autre heure (hôte et modérateurs)",
        "dc.cmd.rename": "Donner un nouveau titre à un Space (hôte et modérateurs)",
        "dc.opt.new_title": "Le nouveau titre",
        "dc.cmd.link": "Partager les Spaces de ce salon avec une autre discussion (toute plateforme) : un code",
        "dc.cmd.unlink": "Ne plus partager les Spaces de ce salon avec les discussions reliées",
        "dc.opt.link_code": "Le code reçu par le modérateur de l'autre discussion (vide : en obtenir un)",
        "dc.opt.title": "Le titre du Space",
        "dc.opt.when": "Quand il commence, par ex. demain 20h, dans 2 heures, vendredi 18h30",
        "dc.opt.timezone": "Le fuseau horaire dans lequel lire l'heure (nom IANA, par ex. Europe/Paris)",
        "dc.opt.voice_channel": "Un salon vocal ou de conférence où il a lieu",
        "dc.opt.description": "De quoi il parle",
        "dc.opt.space": "Quel Space",
        "dc.opt.new_when": "La nouvelle heure, par ex. demain 21h",
        "dc.cmd.source": "Le son d'un Space : URL d'un flux, file:<nom>, browser, ou none (hôte et modérateurs)",
        "dc.cmd.bridge": "Diffuser un Space (son id ou lien) dans un salon vocal de ce serveur (modérateurs)",
        "dc.cmd.unbridge": "Arrêter de diffuser un Space dans un salon vocal de ce serveur",
        "dc.opt.source": "Le son : URL d'un flux (https, rtmp, srt…), file:<nom>, ou browser pour votre micro",
        "dc.opt.bridge_channel": "Le salon vocal ou la scène où le diffuser",
        "dc.in.minutes": "dans {count} minutes",
        "dc.in.minutes#one": "dans 1 minute",
        "dc.in.minutes#zero": "maintenant",
        "dc.in.hours": "dans {count} heures",
        "dc.in.hours#one": "dans 1 heure",
        "dc.in.days": "dans {count} jours",
        "dc.in.days#one": "dans 1 jour",
        "dc.example.tomorrow": "demain 20h",
        "dc.example.in_hour": "dans 1 heure",
        "dc.guild_only": "Utilisez ceci dans un salon de serveur : les Spaces sont annoncés là où ils sont "
        "programmés.",
        "dc.dm_link_hint": "Ici, `/space link` relie votre compte Discord à vos comptes sur d'autres plateformes.",
        "dc.share": "Partagez ce Space : {link}",
        # --- Slack (boutons, confirmations, fenêtres de programmation et de report, l'accueil de l'app) ---
        "sl.button.calendar": "🗓 Ajouter à l'agenda",
        "sl.button.share": "🔗 Lien à partager",
        "sl.button.reschedule": "🕑 Reporter",
        "sl.button.cancel": "❌ Annuler",
        "sl.confirm.cancel.title": "Annuler ce Space ?",
        "sl.confirm.cancel.text": "Tous les abonnés sont prévenus de l'annulation. C'est définitif.",
        "sl.confirm.cancel.yes": "Annuler le Space",
        "sl.confirm.cancel.no": "Le garder",
        "sl.confirm.end.title": "Terminer ce Space ?",
        "sl.confirm.end.text": "Le direct s'arrête pour tout le monde. C'est définitif.",
        "sl.confirm.end.yes": "Terminer",
        "sl.confirm.end.no": "Pas encore",
        "sl.modal.schedule": "Programmer un Space",
        "sl.modal.reschedule": "Reporter",
        "sl.modal.submit": "Programmer",
        "sl.modal.reschedule_submit": "Enregistrer",
        "sl.modal.close": "Fermer",
        "sl.modal.title": "Titre",
        "sl.modal.title_hint": "par ex. AMA hebdo",
        "sl.modal.description": "Description",
        "sl.modal.description_hint": "De quoi parle-t-il ? (facultatif)",
        "sl.modal.date": "Date",
        "sl.modal.date_hint": "Choisissez le jour",
        "sl.modal.time": "Heure",
        "sl.modal.time_hint": "Choisissez l'heure",
        "sl.modal.timezone": "Fuseau horaire",
        "sl.modal.timezone_hint": "Le fuseau de l'heure choisie",
        "sl.modal.current": "« {title} » est prévu pour {when}.",
        "sl.error.title": "Donnez un titre à votre Space.",
        "sl.error.date": "Choisissez le jour où il commence.",
        "sl.error.time": "Choisissez l'heure à laquelle il commence.",
        "sl.error.zone": "Choisissez un fuseau horaire dans la liste.",
        "sl.home.mine": "Vos Spaces à venir",
        "sl.home.followed": "Les Spaces que vous suivez",
        "sl.home.workspace": "Tous les Spaces à venir de cet espace de travail",
        "sl.home.mine_empty": "Vous n'avez rien de programmé. Tapez `/space demain 20h Point d'équipe` dans un "
        "canal, ou simplement `/space` pour un formulaire.",
        "sl.home.followed_empty": "Vous ne suivez encore aucun Space : appuyez sur 🔔 sur la carte d'un Space.",
        "sl.home.workspace_empty": "Rien n'est programmé dans cet espace de travail.",
        "sl.home.item": "{when} · id `{space_id}`",
        "sl.home.more": "…et {count} de plus : `/space list` dans un canal affiche ses Spaces.",
        "sl.home.help": "`/space help` liste toutes les commandes.",
        "sl.not_installed": "Spaces n'est plus installé dans cet espace de travail : demandez à un admin "
        "de l'ajouter à nouveau.",
        "error.generic": "Quelque chose s'est mal passé de mon côté — réessayez dans un instant.",
        "welcome": "Bonjour {name} ! J'annonce des Spaces audio en direct et je vous préviens quand ils commencent.\n"
        "Programmez-en un dans un groupe ou ici : `/space demain 20h AMA hebdo`.",
        "help": "`/space <quand> <titre>` — programmer (ou juste `/space` et je vous demande)\n"
        "`/spaces` — les Spaces à venir ici\n"
        "`/reschedule <id> <quand>` · `/rename <id> <titre>` · `/cancel <id>` · `/live <id>` · `/end <id>` — "
        "hôte et admins\n"
        "`/source <id> <URL d'un flux | browser | none>` — le son du Space (hôte et admins)\n"
        "`/tz <fuseau>` — votre fuseau (actuellement {zone}) · `/chattz <fuseau>` — celui du groupe (admins)\n"
        "`/space link` · `/space unlink` — partager les Spaces de ce groupe avec des discussions d'autres "
        "plateformes (admins) ; en privé, relier vos comptes",
        "ask.title": "Quel est le titre de votre Space ? (répondez à ce message)",
        "ask.time": "Quand commence « {title} » ? par ex. `demain 20h`, `dans 2 heures`, `vendredi 18h30 Europe/Paris`",
        "list.header": "Spaces à venir ici :",
        "list.item": "{marker}{title} — {when} · id `{space_id}`",
        "list.feed": "📅 Toutes dans votre agenda : {url}",
        "usage.id": "Dites-moi quel Space : `/{command} <id>` — `/spaces` les liste.",
        "usage.reschedule": "Usage : `/reschedule <id> <nouvelle heure>`, par ex. `/reschedule <id> demain 21h`.",
        "usage.rename": "Usage : `/rename <id> <nouveau titre>`, par ex. `/rename <id> AMA hebdo n°2`.",
        "usage.tz": "Usage : `/tz Europe/Paris` (un nom de fuseau IANA).",
        "reply.zone_set": "Votre fuseau horaire est désormais {zone}.",
        "reply.community_zone_set": "Le fuseau par défaut de ce groupe est désormais {zone}.",
        "reply.open_dm": "🔔 Rappel activé ! Appuyez sur Démarrer dans notre conversation privée pour que je puisse "
        "vous écrire ; en attendant je vous mentionnerai ici.",
        "reply.live_now": "« {title} » est en direct — rejoignez : {link}",
        "reply.host_open_dm": "Touchez ci-dessous puis Démarrer, pour que je vous envoie vos rappels en privé "
        "(sinon je vous mentionnerai ici).",
        "button.get_reminders": "🔔 Recevoir mes rappels",
        "perm.admins_only": "Seuls les admins de ce groupe peuvent changer ses réglages.",
        "link.code": "Pour partager les Spaces de cette discussion avec une autre — sur Telegram, Discord, Slack "
        "ou la console — un modérateur y envoie `/space link {code}` (sur Telegram : `/link {code}`). Le code "
        "marche une fois, pendant {minutes} minutes.",
        "link.code_private": "Pour relier vos comptes, envoyez-moi ceci en privé sur votre autre plateforme : "
        "`/space link {code}` (sur Telegram : `/link {code}`). Le code marche une fois, pendant {minutes} "
        "minutes.",
        "link.linked": "Relié ✓ Cette discussion partage désormais ses Spaces avec {what} : un Space programmé "
        "dans l'une est annoncé dans toutes, avec une seule liste d'abonnés. `/space unlink` pour annuler.",
        "link.accounts_linked": "Relié ✓ Vos comptes ({accounts}) ne font plus qu'une personne : chaque rappel "
        "vous arrive une fois, sur la plateforme où vous vous êtes abonné en dernier. `/space unlink` ici pour "
        "annuler.",
        "link.told": "Cette discussion partage désormais ses Spaces avec {what} : les Spaces programmés là-bas "
        "sont aussi annoncés ici.",
        "link.told_unlinked": "{what} ne partage plus ses Spaces avec cette discussion.",
        "link.unlinked": "Détaché : cette discussion ne partage plus ses Spaces avec {what}. Les cartes déjà "
        "publiées restent.",
        "link.unlinked_account": "Détaché : ce compte est de nouveau seul ({accounts} n'y sont plus reliés).",
        "link.not_linked": "Cette discussion n'est reliée à aucune autre — `/space link` crée un code pour la "
        "relier.",
        "link.not_linked_account": "Ce compte n'est relié à aucun autre.",
        "link.bad_code": "Ce code est inconnu, déjà utilisé ou expiré (un code marche une fois, pendant "
        "10 minutes). Un code donné dans un groupe relie des discussions, tapé dans un autre groupe ; un code "
        "donné en privé relie des comptes, tapé en privé. Renvoyez `/space link` pour un nouveau code.",
        "link.self": "C'est le code de cette discussion : tapez-le dans l'autre.",
        "link.self_account": "C'est le code de ce compte : tapez-le en privé avec moi sur votre autre "
        "plateforme.",
        "link.already": "Ces deux discussions partagent déjà leurs Spaces.",
        "link.already_account": "Ces deux comptes sont déjà reliés.",
        "link.moderators_only": "Seuls les modérateurs de cette discussion peuvent la relier à d'autres.",
        "link.unavailable": "Relier des discussions n'est pas possible ici.",
        "link.what.telegram": "un groupe Telegram",
        "link.what.discord": "un salon Discord",
        "link.what.slack": "un canal Slack",
        "link.what.console": "la console",
        "link.more": " (et {count} autres discussions)",
        "link.more#one": " (et 1 autre discussion)",
        "conversation.cancelled": "D'accord, rien n'a été programmé.",
        "input.too_long": "Ce message est trop long pour moi — moins de {limit} caractères, s'il vous plaît.",
        "console.greet": "Console prête — vous êtes « {host} », l'hôte, dans #{chat}. Essayez :\n"
        "  /space dans 31 minutes AMA hebdo     (les deux rappels dans une demi-heure)\n"
        "puis /as alice et /subscribe <id>, et /as {host} et /start <id>. /help liste tout. "
        "/lang en: in English.\n"
        "Pour toucher une vraie communauté, définissez TELEGRAM_BOT_TOKEN ou DISCORD_BOT_TOKEN (voir "
        "README.md, « Connecting a platform »)\n"
        "et redémarrez ; `spaces doctor` vérifie les réglages. Slack arrive ensuite.",
        "console.help": "Commandes (les id sont les codes de 10 caractères affichés sur les cartes) :\n"
        "  /space <quand> <titre>           programmer un Space, par ex. /space demain 20h AMA hebdo\n"
        "  /spaces                          les Spaces à venir ici, dans votre fuseau\n"
        "  /subscribe <id>                  un message privé quand il commence      /unsubscribe <id>\n"
        "  /start <id>   /end <id>          démarrer / terminer (hôte ou modérateur)\n"
        "  /cancel <id>                     annuler un Space programmé\n"
        "  /reschedule <id> <quand>         le déplacer, par ex. /reschedule abcd234567 vendredi 18h\n"
        "  /rename <id> <titre>             lui donner un nouveau titre, par ex. /rename abcd234567 AMA hebdo n°2\n"
        "  /source <id> <source>            son audio : l'URL d'un flux, file:<nom>, browser, ou none\n"
        "  /as <nom>                        agir au nom de quelqu'un d'autre (vous êtes « {host} », l'hôte ; "
        "essayez /as alice)\n"
        "  /mod on|off                      donner les droits de modérateur à l'utilisateur actuel\n"
        "  /tz <fuseau>                     votre fuseau, par ex. /tz Europe/Paris (actuellement {zone})\n"
        "  /lang en|fr                      votre langue\n"
        "  /help                            ce texte              /quit   arrêter le service",
        "console.scheduled_hint": "  id {space_id} — /as alice puis /subscribe {space_id} pour recevoir ses rappels",
        "console.bye": "Au revoir.",
        "console.as_host": "Vous êtes de nouveau « {host} », l'hôte.",
        "console.as_listener": "Vous êtes maintenant {name}, auditeur. /as {host} pour revenir.",
        "console.mod_on": "{name} est maintenant modérateur de #{chat}.",
        "console.mod_off": "{name} n'est plus modérateur de #{chat}.",
        "console.zone_set": "Fuseau de {name} : {zone}. Les heures tapées et /spaces s'y lisent désormais.",
        "console.lang_set": "Langue de {name} : français.",
        "console.error": "Quelque chose s'est mal passé de notre côté (voir le journal) ; la commande n'a pas "
        "abouti.",
        "console.edited": "(modifié : {kind} {id})",
        "console.host_only": "(hôte)",
        "console.not_a_command": "Les commandes commencent par « / ». Tapez /help pour les voir.",
        "console.unknown": "Je ne connais pas /{command}. Tapez /help pour voir les commandes.",
        "console.usage.space": "Dites quand et quoi : /space demain 20h AMA hebdo",
        "console.usage.id": "Quel Space ? Usage : /{command} <id> (/spaces affiche les id)",
        "console.usage.reschedule": "Usage : /reschedule <id> <quand>, par ex. /reschedule abcd234567 vendredi 18h",
        "console.usage.as": "Usage : /as <nom> — lettres, chiffres, « _ », « - » ou « . », par ex. /as alice",
        "console.usage.mod": "Usage : /mod on  ou  /mod off",
        "console.usage.source": "Usage : /source <id> <source> — l'URL d'un flux, file:<nom>, browser, ou none",
        "console.usage.tz": "Usage : /tz <fuseau IANA>, par ex. /tz Europe/Paris",
        "console.usage.lang": "Usage : /lang {choices}",
    },
}


class TextKey(str):
    """A parameter that is itself a text key, translated along with the message it goes into
    (``UserError("space.wrong_state", status=TextKey("status.live"))`` → « en direct » in French)."""

    __slots__ = ()


def pick_locale(code: str | None) -> str:
    """Map a platform language code ('fr', 'fr-CA', 'en_US', None) to a supported locale."""
    if not code:
        return DEFAULT_LOCALE
    base = code.replace("_", "-").split("-", 1)[0].lower()
    return base if base in TEXTS else DEFAULT_LOCALE


def t(locale: str | None, key: str, **params: Any) -> str:
    """The text for ``key`` in ``locale`` (falling back to English), formatted with ``params``.

    With an integer ``count``, the plural variant of the key is used when there is one (see the module
    notes). List parameters are joined as a human list ("a or b" is the caller's job: we join with ' / ')."""
    loc = pick_locale(locale)
    count = params.get("count")
    if isinstance(count, int) and not isinstance(count, bool):
        key = _plural_key(loc, key, count)
    template = TEXTS[loc].get(key) or TEXTS[DEFAULT_LOCALE][key]
    shown = {k: _shown(loc, v) for k, v in params.items()}
    return template.format(**shown)


def plural_one(locale: str, count: int) -> bool:
    """Does ``count`` take the singular? English: 1 only. French: 0 and 1 ("0 abonné", "1 abonné")."""
    if locale == "fr":
        return count in (0, 1)
    return count == 1


def _plural_key(locale: str, key: str, count: int) -> str:
    def known(k: str) -> bool:
        return k in TEXTS[locale] or k in TEXTS[DEFAULT_LOCALE]

    if count == 0 and known(f"{key}#zero"):
        return f"{key}#zero"
    if plural_one(locale, count) and f"{key}#one" in TEXTS[locale]:
        return f"{key}#one"
    return key


def _shown(locale: str, value: Any) -> Any:
    if isinstance(value, TextKey):
        return TEXTS[locale].get(value) or TEXTS[DEFAULT_LOCALE].get(value, str(value))
    if isinstance(value, list | tuple):
        return " / ".join(str(_shown(locale, v)) for v in value)
    return value
