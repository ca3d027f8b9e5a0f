"""Generate the synthetic PII test set (seeded; never real personal data).

    python bench/data_pii_testset.py            # writes tests/data/pii_testset.jsonl

Every identifier is made up but *valid in form*: Chinese resident IDs with real region
codes, real birth dates and a correct GB 11643 check character; bank cards with issuer
prefixes (UnionPay 62, Visa 4, Mastercard 51–55, Amex 34/37) and a correct Luhn digit; phone
numbers in international, North-American, Chinese-mobile and Chinese-landline formats;
e-mails and URLs on reserved example domains; IPs from private and documentation ranges.
Lines mix Chinese and English, and include hard negatives (order numbers, dates, prices,
version strings, ID numbers with a wrong check character, card numbers failing Luhn).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from openautoglm.data.pii import cn_id_check_char, luhn_check_digit, luhn_valid  # noqa: E402

OUT = ROOT / "tests" / "data" / "pii_testset.jsonl"
SEED = 20261124
N_LINES = 400

REGIONS = ["110101", "110105", "310104", "310115", "440305", "440106", "510107", "330106", "320102",
           "420106", "500103", "610113", "210102", "370202", "350203", "120101", "430104", "410105"]
BINS = {"unionpay": ["622202", "622848", "621700", "622588", "621226", "623668"],
        "visa": ["4011", "4539", "4916", "4024"], "mc": ["51", "52", "53", "54", "55"],
        "amex": ["34", "37"]}
FIRST = ["alice", "bob", "wei.zhang", "li.na", "chen", "j.smith", "maria", "ivan", "yuki", "omar", "wang_fang", "liu88"]
DOMAINS = ["example.com", "example.org", "example.net", "mail.example.cn", "corp.example.com.cn", "test.example"]
ZH_NAMES = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄强"]
EN_NAMES = ["Alice Brown", "Bob Lee", "Maria Garcia", "John Smith", "Omar Haddad", "Yuki Tanaka"]


def cn_id(rng: random.Random) -> str:
    year = rng.randint(1950, 2005)
    month, day = rng.randint(1, 12), rng.randint(1, 28)
    first17 = f"{rng.choice(REGIONS)}{year:04d}{month:02d}{day:02d}{rng.randint(0, 999):03d}"
    return first17 + cn_id_check_char(first17)


def bad_cn_id(rng: random.Random) -> str:
    good = cn_id(rng)
    wrong = [c for c in "0123456789X" if c != good[-1]]
    return good[:-1] + rng.choice(wrong)


def card_digits(rng: random.Random) -> str:
    kind = rng.choice(["unionpay", "unionpay", "visa", "mc", "amex"])
    prefix = rng.choice(BINS[kind])
    length = 15 if kind == "amex" else (rng.choice([16, 19]) if kind == "unionpay" else 16)
    body = prefix + "".join(str(rng.randint(0, 9)) for _ in range(length - len(prefix) - 1))
    return body + luhn_check_digit(body)


def group_card(digits: str, rng: random.Random) -> str:
    style = rng.choice(["plain", "space", "dash"])
    if style == "plain":
        return digits
    sep = " " if style == "space" else "-"
    if len(digits) == 15:
        return sep.join([digits[:4], digits[4:10], digits[10:]])
    return sep.join(digits[i:i + 4] for i in range(0, len(digits), 4))


def bank_card(rng: random.Random) -> str:
    return group_card(card_digits(rng), rng)


def bad_card(rng: random.Random) -> str:
    digits = card_digits(rng)
    last = str((int(digits[-1]) + rng.randint(1, 9)) % 10)
    assert not luhn_valid(digits[:-1] + last)
    return group_card(digits[:-1] + last, rng)


def cn_mobile(rng: random.Random) -> str:
    number = rng.choice(["13", "15", "17", "18", "19"]) + str(rng.randint(0, 9)) + "".join(
        str(rng.randint(0, 9)) for _ in range(8))
    style = rng.choice(["plain", "plain", "space", "dash", "+86", "+86 space"])
    if style == "space":
        return f"{number[:3]} {number[3:7]} {number[7:]}"
    if style == "dash":
        return f"{number[:3]}-{number[3:7]}-{number[7:]}"
    if style == "+86":
        return "+86" + number
    if style == "+86 space":
        return f"+86 {number[:3]} {number[3:7]} {number[7:]}"
    return number


def phone(rng: random.Random) -> str:
    d = lambda n: "".join(str(rng.randint(0, 9)) for _ in range(n))  # noqa: E731
    return rng.choice([
        f"+1 (415) 555-{d(4)}", f"+1 212-555-{d(4)}", f"(646) 555-{d(4)}", f"+44 20 7946 {d(4)}",
        f"+49 30 {d(7)}", f"+81 3-{d(4)}-{d(4)}", f"+33 1 {d(2)} {d(2)} {d(2)} {d(2)}", f"010-{d(8)}",
        f"021-{d(8)}", f"0755-{d(7)}", f"+852 {d(4)} {d(4)}", f"+61 2 {d(4)} {d(4)}",
    ])


def email(rng: random.Random) -> str:
    user = rng.choice(FIRST) + (str(rng.randint(1, 99)) if rng.random() < 0.5 else "")
    return f"{user}@{rng.choice(DOMAINS)}"


def url(rng: random.Random) -> str:
    host = rng.choice(["www.example.com", "example.org", "shop.example.cn", "docs.example.net"])
    path = rng.choice(["", "/", "/about", "/products/123", "/search?q=data&page=2", "/a/b/c.html", "/zh-cn/help"])
    scheme = rng.choice(["https://", "http://", "https://", ""]) if host.startswith("www.") else rng.choice(
        ["https://", "http://"])
    return scheme + host + path


def ip(rng: random.Random) -> str:
    return rng.choice([
        f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}", f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        f"172.{rng.randint(16, 31)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}", f"203.0.113.{rng.randint(1, 254)}",
        f"198.51.100.{rng.randint(1, 254)}", f"2001:db8::{rng.randint(1, 0xffff):x}",
        f"2001:db8:{rng.randint(1, 0xffff):x}:{rng.randint(1, 0xffff):x}::{rng.randint(1, 0xff):x}",
    ])


MAKERS = {"email": email, "url": url, "ip": ip, "cn_id": cn_id, "bank_card": bank_card, "cn_mobile": cn_mobile,
          "phone": phone}

ZH = [
    "我的手机号是{cn_mobile}，有事请联系。", "身份证号码：{cn_id}，姓名：{zh_name}。", "请把款打到卡号{bank_card}，谢谢！",
    "访问{url}了解详情。", "服务器地址{ip}无法连接，请检查。", "邮箱{email}，电话{phone}。",
    "{zh_name}的身份证{cn_id}已登记，联系电话{cn_mobile}", "退款已转入尾号为{bank_card}的银行卡", "客服热线{phone}，工作日9:00-18:00",
    "请发送简历至{email}，或致电{cn_mobile}。", "登录日志：用户从{ip}登录，时间2024-03-15 08:30:12", "官网：{url}，邮箱：{email}",
    "收件人：{zh_name}，手机{cn_mobile}，地址：北京市朝阳区建国路88号", "订单{order}已发货，预计3天送达。",
    "价格¥1,299.00，优惠码SAVE2024，有效期至2025-12-31。", "版本1.2.3.4更新说明，详见第2章。", "身份证{bad_id}校验失败，请重新输入。",
    "这家酒店的早餐很丰富，服务也不错。", "卡号{bad_card}无效，请核对后再试。", "会议时间：2024年5月1日 14:30，房间号1203。",
]
EN = [
    "Please contact {en_name} at {email} or {phone}.", "Card number: {bank_card}, expires 09/27.",
    "Server {ip} returned 500 at 12:30:45.", "Read more at {url} before Friday.", "Call me on {cn_mobile} when you land in Shanghai.",
    "Her ID card {cn_id} was scanned at the front desk.", "Send the invoice to {email}; our office line is {phone}.",
    "Traffic from {ip} and {ip2} was blocked by the firewall.", "Order {order} shipped on 2024-05-01 for $129.99.",
    "Version 2.10.3 fixes the login bug (see issue #4521).", "The ID {bad_id} failed validation.",
    "Payment with {bad_card} was declined: invalid number.", "The film was a delight from start to finish.",
    "Meeting at 10:30 in room 1203, dial-in code 845 221.", "Visit {url} or write to {email} for a refund.",
    "Customer {en_name}, phone {phone}, card {bank_card}.", "ISBN 978-0-306-40615-7 is on page 42.",
    "Backup job on {ip} finished; report at {url}", "WeChat/phone: {cn_mobile}, email {email}",
    "Tracking number 1Z999AA10123456784 arrives Tuesday.",
]


def order_number(rng: random.Random) -> str:
    return "".join(str(rng.randint(0, 9)) for _ in range(rng.randint(12, 18)))


def render(template: str, rng: random.Random) -> tuple[str, list[dict[str, object]]]:
    import re

    out, spans, pos = [], [], 0
    for m in re.finditer(r"\{(\w+)\}", template):
        out.append(template[pos:m.start()])
        offset = sum(len(p) for p in out)
        key = m.group(1)
        kind = key.rstrip("0123456789")
        if kind in MAKERS:
            value = MAKERS[kind](rng)
            spans.append({"type": kind, "start": offset, "end": offset + len(value), "value": value})
        else:
            value = {"zh_name": lambda: rng.choice(ZH_NAMES), "en_name": lambda: rng.choice(EN_NAMES),
                     "order": lambda: order_number(rng), "bad_id": lambda: bad_cn_id(rng),
                     "bad_card": lambda: bad_card(rng)}[kind]()
        out.append(value)
        pos = m.end()
    out.append(template[pos:])
    return "".join(out), spans


def generate(n: int = N_LINES, seed: int = SEED) -> list[dict[str, object]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        lang = "zh" if i % 2 == 0 else "en"
        text, spans = render(rng.choice(ZH if lang == "zh" else EN), rng)
        rows.append({"id": i, "lang": lang, "text": text, "spans": spans})
    return rows


def main() -> None:
    rows = generate()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    n_spans = sum(len(r["spans"]) for r in rows)  # type: ignore[arg-type]
    print(f"wrote {len(rows)} lines, {n_spans} PII spans to {OUT}")


if __name__ == "__main__":
    main()
