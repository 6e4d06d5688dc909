"""Write the bundled demo set, data/demo/{train,test}.jsonl: short news-style articles, 0-3 topics each.

The articles are composed for this project from hand-written sentence templates (no third-party
text): each topic has its own sentences; an article takes sentences from each of its topics, and
articles with no topic are made of everyday local-news sentences that belong to none. Deterministic:
the same seed writes the same files.

    python scripts/make_demo_data.py            # rewrites data/demo/
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

COUNTRIES = ["Brazil", "Canada", "Japan", "Germany", "India", "Kenya", "Mexico", "Norway", "Spain",
             "Australia", "Egypt", "Chile", "Poland", "Vietnam", "Turkey", "Argentina"]
COMPANIES = ["Halvorsen Group", "Meridian Holdings", "Castellan Corp", "Northwind Industries", "Ostara AG",
             "Bluewater Partners", "Tessaly Systems", "Granite Peak Inc", "Lumen Works", "Arbor & Finch"]
CITIES = ["Rotterdam", "Osaka", "Lagos", "Denver", "Lyon", "Santiago", "Perth", "Hamburg", "Chennai", "Quebec"]
MONTHS = ["January", "March", "April", "June", "August", "September", "October", "November"]

TOPICS: dict[str, dict[str, list[str]]] = {
    "markets": {
        "titles": ["Stocks slide as {company} disappoints", "Shares of {company} jump {pct} percent",
                   "Bond yields climb in {country}", "Index ends week higher on broad buying"],
        "sentences": [
            "Shares of {company} rose {pct} percent in early trading after quarterly earnings beat forecasts.",
            "The benchmark stock index closed {pct} percent lower as investors sold bank shares.",
            "Government bond yields in {country} climbed to their highest level since {month}.",
            "Traders said the equity market was driven by heavy buying from pension funds.",
            "The company's stock has lost a third of its value since the start of the year.",
            "Analysts raised their price target for {company} shares after the dividend increase.",
            "Trading volume on the exchange was {num} million shares, well above the daily average.",
            "Investors moved money out of equities and into government bonds ahead of the holiday.",
        ],
    },
    "economy": {
        "titles": ["{country} inflation eases to {pct} percent", "Central bank of {country} holds rates",
                   "{country} growth beats estimates", "Unemployment falls in {country}"],
        "sentences": [
            "Consumer prices in {country} rose {pct} percent from a year earlier, the statistics office said.",
            "The central bank kept its benchmark interest rate unchanged at {pct} percent.",
            "Gross domestic product grew {pct} percent in the third quarter, faster than economists expected.",
            "The unemployment rate fell to {pct} percent, its lowest reading in a decade.",
            "Retail sales slowed in {month} as households cut spending on durable goods.",
            "The finance ministry cut its growth forecast for next year, citing weaker exports.",
            "Economists said the budget deficit would narrow as tax receipts recover.",
            "Wage growth has lagged behind inflation for most of the past two years.",
        ],
    },
    "energy": {
        "titles": ["Oil prices rise on supply worries", "{company} opens new gas field",
                   "{country} raises crude output", "Power prices spike in cold snap"],
        "sentences": [
            "Crude oil futures rose {num} cents to settle above eighty dollars a barrel.",
            "The new offshore gas field is expected to produce {num} million cubic meters a day.",
            "{country} said it would raise crude production by {num} thousand barrels per day.",
            "Electricity prices spiked as a cold spell pushed demand for heating to a record.",
            "The refinery in {city} was shut for maintenance, tightening fuel supplies in the region.",
            "OPEC ministers will meet in {month} to review output quotas.",
            "The utility plans to close its last coal-fired power station by the end of the decade.",
            "Gasoline inventories fell by {num} million barrels last week, the agency reported.",
        ],
    },
    "agriculture": {
        "titles": ["Wheat harvest in {country} beats forecast", "Coffee prices fall on big crop",
                   "Farmers in {country} expand soybean planting", "Dairy exports rise"],
        "sentences": [
            "The wheat harvest in {country} is forecast at {num} million tonnes, up from last season.",
            "Coffee prices fell as the new crop arrived earlier than traders had expected.",
            "Farmers are planting more soybeans this year because of strong demand from feed mills.",
            "The agriculture ministry said livestock numbers had recovered after the disease outbreak.",
            "Sugar cane crushing in the main growing region was delayed by heavy rains.",
            "Corn export sales reached {num} thousand tonnes in the latest week.",
            "Dairy cooperatives reported higher milk collection and rising cheese exports.",
            "Fertilizer costs have squeezed the margins of small grain farmers.",
        ],
    },
    "technology": {
        "titles": ["{company} unveils new chip", "Software maker {company} buys startup",
                   "Data center boom in {city}", "{company} recalls faulty devices"],
        "sentences": [
            "{company} unveiled a new processor that it says uses half the power of its predecessor.",
            "The software maker agreed to buy a cloud security startup for an undisclosed sum.",
            "A wave of new data centers is being built around {city} to serve artificial intelligence demand.",
            "The company recalled {num} thousand devices after reports of overheating batteries.",
            "Engineers at the firm said the new smartphone app would launch in {month}.",
            "The chip shortage that hit car makers last year has largely eased, suppliers said.",
            "A software update fixed a security flaw that exposed the data of millions of users.",
            "The startup raised {num} million dollars to develop its machine learning platform.",
        ],
    },
    "health": {
        "titles": ["Hospitals in {city} report flu surge", "New vaccine approved in {country}",
                   "Drug maker {company} wins approval", "Study links diet to heart disease"],
        "sentences": [
            "Hospitals in {city} reported a sharp rise in influenza admissions this week.",
            "Regulators approved a new vaccine after trials showed strong protection in older adults.",
            "The drug maker said its treatment reduced symptoms in {pct} percent of patients in the trial.",
            "A large study found that diets high in salt raise the risk of heart disease.",
            "Health officials urged parents to keep children's vaccinations up to date.",
            "The clinic network will add {num} new doctors to shorten waiting times.",
            "Researchers said the virus variant spreads faster but causes milder illness.",
            "The ministry of health launched a campaign against smoking among teenagers.",
        ],
    },
    "sports": {
        "titles": ["{city} side wins the cup final", "Star striker signs new contract",
                   "Marathon record falls in {city}", "Coach resigns after heavy defeat"],
        "sentences": [
            "The home side won the cup final {score} after extra time in front of a sold-out stadium.",
            "The striker signed a new four-year contract with the club on Tuesday.",
            "A new course record was set at the {city} marathon despite strong winds.",
            "The coach resigned after his team lost five matches in a row.",
            "The tennis champion withdrew from the tournament with a shoulder injury.",
            "Fans lined the streets of {city} to welcome the team home after the title win.",
            "The league said the match would be replayed because of the waterlogged pitch.",
            "The national team qualified for the World Cup with a late goal against {country}.",
        ],
    },
    "politics": {
        "titles": ["{country} votes in tight election", "Parliament passes budget bill",
                   "Minister resigns over scandal", "Coalition talks stall in {country}"],
        "sentences": [
            "Voters in {country} go to the polls on Sunday in an election that remains too close to call.",
            "Parliament passed the budget bill by a narrow majority after a long night of debate.",
            "The minister resigned after newspapers reported undeclared payments from a lobbyist.",
            "Coalition talks stalled over the question of who would lead the finance ministry.",
            "The opposition leader promised to call a referendum on the new constitution.",
            "The prime minister of {country} reshuffled the cabinet, replacing four ministers.",
            "Lawmakers approved a bill that would lower the voting age to sixteen.",
            "The president vetoed the measure, saying it exceeded the powers of the regional assemblies.",
        ],
    },
    "climate": {
        "titles": ["Heat wave grips {country}", "Floods hit {city} after record rain",
                   "Emissions fall for a second year", "Glacier retreat speeds up"],
        "sentences": [
            "A heat wave pushed temperatures above forty degrees across southern {country}.",
            "Record rainfall flooded low-lying districts of {city}, forcing hundreds from their homes.",
            "Carbon emissions fell for a second year as wind and solar replaced older plants.",
            "Scientists said the glacier had lost {pct} percent of its ice over the past decade.",
            "The drought has left reservoirs at less than a third of their capacity.",
            "Delegates at the climate summit agreed to phase down the use of fossil fuels.",
            "Wildfires burned {num} thousand hectares of forest during the dry summer.",
            "The weather service warned that sea levels along the coast are rising faster than expected.",
        ],
    },
    "transport": {
        "titles": ["Airline {company} orders new jets", "Rail strike halts trains in {country}",
                   "Port of {city} reports record volumes", "New metro line opens in {city}"],
        "sentences": [
            "The airline ordered {num} new narrow-body jets to replace its ageing fleet.",
            "A rail strike halted most passenger trains in {country} for a second day.",
            "The port of {city} handled a record {num} thousand containers last month.",
            "A new metro line opened in {city}, cutting commuting times to the airport.",
            "Truck drivers blocked the highway to protest against higher diesel taxes.",
            "Shipping lines rerouted vessels around the cape, adding two weeks to voyages.",
            "The carmaker's electric bus will enter service in {month} on three city routes.",
            "Air traffic controllers warned of delays during the summer holiday season.",
        ],
    },
}

# Everyday local news that is about none of the topics: the zero-label articles.
NO_TOPIC = {
    "titles": ["Library in {city} reopens after renovation", "Local choir celebrates anniversary",
               "Museum in {city} shows medieval maps", "Town festival draws crowds"],
    "sentences": [
        "The public library in {city} reopened after a year of renovation work.",
        "The community choir celebrated its fiftieth anniversary with a concert in the old church.",
        "A new exhibition of medieval maps opened at the city museum on Saturday.",
        "Thousands of visitors came to the summer festival for music, food and fireworks.",
        "Volunteers planted trees along the river path as part of a neighborhood clean-up.",
        "The bakery on the main square has been run by the same family for four generations.",
        "Students from the art school painted a mural on the wall of the old railway depot.",
        "The annual flower show in {city} attracted gardeners from across the region.",
        "A lost dog was returned to its owners after a week thanks to a neighbor's post.",
        "The theater company will stage a new comedy written by a local playwright.",
    ],
}

# Topics that tend to appear together, as they do in real news.
RELATED = {
    "markets": ["economy", "technology", "energy"], "economy": ["markets", "politics", "agriculture"],
    "energy": ["economy", "climate", "transport"], "agriculture": ["climate", "economy"],
    "technology": ["markets", "health"], "health": ["politics", "technology"],
    "sports": ["health", "politics"], "politics": ["economy", "health", "climate"],
    "climate": ["agriculture", "energy", "politics"], "transport": ["energy", "economy", "climate"],
}


def fill(template: str, rng: random.Random) -> str:
    return template.format(
        country=rng.choice(COUNTRIES), company=rng.choice(COMPANIES), city=rng.choice(CITIES),
        month=rng.choice(MONTHS), num=rng.randint(2, 950), pct=f"{rng.uniform(0.1, 9.9):.1f}",
        score=f"{rng.randint(1, 4)}-{rng.randint(0, 3)}",
    )


def pick_topics(rng: random.Random) -> list[str]:
    count = rng.choices([0, 1, 2, 3], weights=[15, 45, 28, 12])[0]
    if count == 0:
        return []
    topics = [rng.choice(list(TOPICS))]
    while len(topics) < count:
        candidates = [t for t in RELATED[topics[-1]] if t not in topics] or [t for t in TOPICS if t not in topics]
        topics.append(rng.choice(candidates))
    return sorted(topics)


def make_article(index: int, rng: random.Random) -> dict:
    topics = pick_topics(rng)
    if not topics:
        pool = NO_TOPIC
        sentences = rng.sample(pool["sentences"], rng.randint(3, 4))
        title = rng.choice(pool["titles"])
    else:
        title = rng.choice(TOPICS[topics[0]]["titles"])
        sentences = []
        for topic in topics:
            sentences += rng.sample(TOPICS[topic]["sentences"], rng.randint(1, 3) if len(topics) > 1 else 3)
        rng.shuffle(sentences)
        if rng.random() < 0.25:  # a stray everyday sentence, as real articles carry some noise
            sentences.append(rng.choice(NO_TOPIC["sentences"]))
    return {
        "id": f"demo-{index:04d}",
        "title": fill(title, rng),
        "text": " ".join(fill(s, rng) for s in sentences),
        "labels": topics,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/demo"))
    parser.add_argument("--train", type=int, default=360)
    parser.add_argument("--test", type=int, default=120)
    parser.add_argument("--seed", type=int, default=1987)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    articles = [make_article(i, rng) for i in range(args.train + args.test)]
    args.out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", articles[: args.train]), ("test", articles[args.train :])):
        path = args.out / f"{name}.jsonl"
        path.write_text("".join(json.dumps(a) + "\n" for a in part))
        sizes = [len(a["labels"]) for a in part]
        print(f"{path}: {len(part)} articles; topics per article 0/1/2/3: "
              + "/".join(str(sizes.count(k)) for k in range(4)))


if __name__ == "__main__":
    main()
